"""`sensornet broker` (the non-Docker route) as a user and systemd run it: stopping, a taken port,
accounts added while it runs, and the password file's ownership for the broker's uid 1883."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sensornet import paths
from sensornet.broker import connack_code, render_config
from tests.helpers import Sensornet, free_port, run_sensornet, sensornet_command, wait_until

BROKER_UID = 1883  # the eclipse-mosquitto image's `mosquitto` user


def add_account(passwd: Path, name: str, password: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`sensornet broker add-account NAME` with the password on standard input, as bootstrap.sh calls it."""
    return subprocess.run([*sensornet_command("broker"), "add-account", name, "--passwd", str(passwd), *flags],
                          input=f"{password}\n", capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if k != "SENSORNET_ACCOUNT_PASSWORD"})


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_runner(tmp: Path, passwd: Path, *flags: str) -> tuple[Sensornet, int]:
    port = free_port()
    proc = Sensornet("broker", "--port", str(port), "--bind", "127.0.0.1", "--no-tls", "--passwd", str(passwd),
                     "--state-dir", str(tmp / "state"), *flags)
    try:
        proc.wait_line("sensornet broker: mosquitto listening on 127.0.0.1:", timeout=15)
    except BaseException:
        proc.stop()
        raise
    return proc, port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_within_5_s_with_mosquitto_stopped(tmp_path, sig):
    passwd = tmp_path / "passwd"
    assert add_account(passwd, "bridge", "pw").returncode == 0
    proc, port = start_runner(tmp_path, passwd)
    try:
        (mosquitto,) = children(proc.process.pid)
        assert "mosquitto" in Path(f"/proc/{mosquitto}/cmdline").read_text()
        proc.process.send_signal(sig)
        assert proc.wait(5) == 0
        assert not alive(mosquitto)  # stopped and reaped, no zombie
        with socket.socket() as s:  # and its port free again
            assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        proc.stop()


def test_a_taken_port_fails_with_a_message_naming_it(tmp_path):
    passwd = tmp_path / "passwd"
    assert add_account(passwd, "bridge", "pw").returncode == 0
    with socket.socket() as other:  # another broker, say Debian's mosquitto.service
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_sensornet("broker", "--port", str(port), "--bind", "127.0.0.1", "--no-tls",
                               "--passwd", str(passwd), "--state-dir", str(tmp_path / "state"), timeout=20)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use by another process" in result.stderr
    assert "systemctl disable --now mosquitto" in result.stderr
    assert "listening" not in result.stderr


def test_passwords_on_the_command_line_are_refused(tmp_path):
    result = run_sensornet("broker", "--account", "bridge:secret", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "add-account" in result.stderr
    assert "secret" not in result.stderr + result.stdout


def test_add_account_reads_the_password_from_a_file_and_keeps_the_file_0600(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    passwd = tmp_path / "passwd"
    result = add_account(passwd, "huzzah-01ffc000", "ignored", "--from-file", str(secret), "--owner", str(os.getuid()))
    assert result.returncode == 0, result.stderr
    assert "from-a-file" not in result.stderr + result.stdout
    assert passwd.stat().st_mode & 0o777 == 0o600
    assert passwd.read_text().startswith("huzzah-01ffc000:$7$")  # hashed (PBKDF2-SHA512), never in clear
    bad = add_account(passwd, "a:b", "pw")
    assert bad.returncode == 2
    assert "account name 'a:b'" in bad.stderr


def test_an_account_added_while_it_runs_as_uid_1883_can_log_in(tmp_path):
    """The systemd unit's way: root runs `sensornet broker --uid 1883`; `sudo sensornet broker
    add-account` gives the password file to uid 1883, mode 0600; the change is reloaded by itself."""
    shared = Path(tempfile.mkdtemp(prefix="sensornet-broker-"))  # pytest's tmp_path is 0700 root
    try:
        shared.chmod(0o755)
        passwd = shared / "passwd"
        assert add_account(passwd, "bridge", "bridge-pw").returncode == 0
        st = passwd.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (BROKER_UID, BROKER_UID, 0o600)
        proc, port = start_runner(shared, passwd, "--uid", str(BROKER_UID))
        try:
            (mosquitto,) = children(proc.process.pid)
            assert os.stat(f"/proc/{mosquitto}").st_uid == BROKER_UID
            assert connack_code("127.0.0.1", port, "bridge", "bridge-pw") == 0
            assert connack_code("127.0.0.1", port, "huzzah-01ffc000", "new-pw") == 5
            assert add_account(passwd, "huzzah-01ffc000", "new-pw").returncode == 0
            proc.wait_line("reloading the password file", timeout=10)
            wait_until(lambda: connack_code("127.0.0.1", port, "huzzah-01ffc000", "new-pw") == 0, 10,
                       "the new account to be accepted")
            assert proc.stop() == 0
        finally:
            proc.stop()
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=True)


@pytest.mark.parametrize(("owner", "mode", "readable"), [
    (BROKER_UID, 0o600, True),   # what `sudo sensornet broker add-account` makes: the image's user reads it
    (0, 0o600, False),           # the README's old recipe as root/the host user: the image's broker crash-loops
])
def test_the_debian_binary_as_uid_1883_reads_the_password_file_only_when_it_owns_it(owner, mode, readable):
    """The Docker route's mechanism, here: Mosquitto 2.0 opens the password file after dropping to
    its `mosquitto` user (uid 1883 in eclipse-mosquitto:2). Run Debian's binary as uid 1883 with
    setpriv on the same files, with the same ownership and modes."""
    root = Path(tempfile.mkdtemp(prefix="sensornet-uid1883-"))
    try:
        root.chmod(0o755)
        passwd = root / "passwd"
        assert add_account(passwd, "bridge", "bridge-pw", "--owner", str(owner)).returncode == 0
        passwd.chmod(mode)
        (root / "data").mkdir()
        os.chown(root / "data", BROKER_UID, BROKER_UID)
        port = free_port()
        conf = root / "mosquitto.conf"
        acl = root / "acl"  # a copy uid 1883 can reach, wherever the checkout is (a clone in a 0700 directory)
        shutil.copyfile(paths.BROKER_DIR / "acl", acl)
        acl.chmod(0o644)
        conf.write_text(render_config((paths.BROKER_DIR / "mosquitto.conf").read_text(), root, port, "127.0.0.1",
                                      acl_file=acl, password_file=passwd, as_root=False))
        broker = subprocess.Popen(["setpriv", f"--reuid={BROKER_UID}", f"--regid={BROKER_UID}", "--clear-groups",
                                   "mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        try:
            if readable:
                wait_until(lambda: _accepts(port) or broker.poll() is not None, 10, "the broker")
                assert broker.poll() is None
                assert connack_code("127.0.0.1", port, "bridge", "bridge-pw") == 0
            else:
                out, _ = broker.communicate(timeout=10)
                assert broker.returncode != 0
                assert f'Unable to open pwfile "{passwd}"' in out
        finally:
            broker.terminate()
            broker.wait(5)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        time.sleep(0.05)
        return False


def test_the_containers_command_reloads_a_changed_password_file_and_stops_on_sigterm(tmp_path):
    """broker/run-mosquitto.sh, the eclipse-mosquitto container's command, run here by dash (a POSIX
    sh like the image's busybox ash) on the repo's config with local paths."""
    config = tmp_path / "config"
    config.mkdir()
    for name in ("run-mosquitto.sh", "acl"):
        (config / name).write_bytes((paths.BROKER_DIR / name).read_bytes())
    passwd = config / "passwd"
    assert add_account(passwd, "bridge", "bridge-pw", "--owner", "0").returncode == 0
    port = free_port()
    (config / "mosquitto.conf").write_text(render_config(
        (paths.BROKER_DIR / "mosquitto.conf").read_text(), tmp_path, port, "127.0.0.1", acl_file=config / "acl",
        password_file=passwd))
    (tmp_path / "data").mkdir()
    proc = subprocess.Popen(["dash", str(config / "run-mosquitto.sh")], env=dict(os.environ, RELOAD_CHECK_S="0.2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _accepts(port), 10, "the container's broker")
        assert connack_code("127.0.0.1", port, "huzzah-01ffc000", "pw") == 5
        assert add_account(passwd, "huzzah-01ffc000", "pw", "--owner", "0").returncode == 0
        wait_until(lambda: connack_code("127.0.0.1", port, "huzzah-01ffc000", "pw") == 0, 10,
                   "the added account to be accepted")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
        assert proc.returncode == 0
        assert "the password file or ACL changed: reloading" in out
        assert "terminating" in out  # Mosquitto's own clean stop
    finally:
        proc.kill()
        proc.wait()
