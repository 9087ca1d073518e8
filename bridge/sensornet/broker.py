"""Run Mosquitto with the repo's configuration, on machines without Docker.

`broker/mosquitto.conf` is written for the eclipse-mosquitto:2 image. `Broker` runs the same
file with the Debian `mosquitto` binary: it replaces the image's `/mosquitto/` paths with local
ones (the password file, by default broker/passwd as for Docker; the TLS directory broker/tls; a
state directory for the persistence database), optionally changes the listeners' ports and bind
address, and leaves the TLS listeners out when there is no certificate. The ACL file is used as
committed (broker/acl). Accounts are written by `sensornet broker add-account` (sensornet.accounts).

Source for the settings: mosquitto.conf(5), mosquitto(8) (signals), Mosquitto 2.0.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import childproc

from . import paths
from .accounts import (
    BROKER_UID,
    DEFAULT_PASSWD,
    AccountError,
    BrokerError,
    add_account_main,
    connack_code,
    find_tool,
    write_accounts,
)

__all__ = ["DEFAULT_PORT", "Broker", "BrokerError", "AccountError", "connack_code", "find_tool", "free_port", "main",
           "render_config", "wait_for_port", "write_accounts"]

DEFAULT_PORT, DEFAULT_TLS_PORT, DEFAULT_WS_PORT = 1883, 8883, 9001
DEFAULT_TLS_DIR = paths.BROKER_DIR / "tls"
PROBE_ACCOUNT = "reload-probe"  # see Broker.reload(): no ACL line names it, so it may do nothing


def _listener_blocks(lines: list[str]) -> dict[int, tuple[int, int]]:
    """{port in the template: (first line, end line)} of each `listener` block (to the next blank line)."""
    blocks = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"listener (\d+)", line.strip())
        if m:
            end = next((j for j in range(i, len(lines)) if not lines[j].strip()), len(lines))
            blocks[int(m[1])] = (i, end)
    return blocks


def render_config(template: str, state_dir: Path, port: int | None = None, bind: str | None = None,
                  acl_file: Path | None = None, password_file: Path | None = None, tls_dir: Path | None = None,
                  tls_port: int | None = None, ws_port: int | None = None, as_root: bool | None = None) -> str:
    """Turn the image's mosquitto.conf (str) into one for a local broker (str).

    `/mosquitto/config/passwd` -> `password_file` (default `<state_dir>/passwd`), `/mosquitto/config/acl`
    -> `acl_file` (default broker/acl), `/mosquitto/config/tls/` -> `tls_dir` (default broker/tls),
    `/mosquitto/data/` -> `<state_dir>/data/`. The plain listener (1883) gets `port`; the TLS (8883)
    and WebSocket (9001) listeners get `tls_port` and `ws_port`, and are left out when those are None.
    Every listener gets `bind` when given. When run as root (`as_root`, default: whether we are),
    `user root` keeps Mosquitto from dropping to the `mosquitto` user, which could not read the checkout.
    Raises BrokerError when the template has no `listener 1883` block.
    """
    text = template.replace("/mosquitto/config/passwd", str(password_file or state_dir / "passwd"))
    text = text.replace("/mosquitto/config/acl", str(acl_file or paths.BROKER_DIR / "acl"))
    text = text.replace("/mosquitto/config/tls/", str(tls_dir or DEFAULT_TLS_DIR) + "/")
    text = text.replace("/mosquitto/data/", str(state_dir / "data") + "/")
    lines = text.split("\n")
    blocks = _listener_blocks(lines)
    if DEFAULT_PORT not in blocks:
        raise BrokerError("broker/mosquitto.conf has no `listener 1883` line")
    wanted = {DEFAULT_PORT: port or DEFAULT_PORT, DEFAULT_TLS_PORT: tls_port, DEFAULT_WS_PORT: ws_port}
    for template_port, (first, end) in sorted(blocks.items(), key=lambda b: -b[1][0]):  # bottom up
        new_port = wanted.get(template_port, template_port)
        if new_port is None:
            del lines[first:end + 1]
        else:
            lines[first] = f"listener {new_port}" + (f" {bind}" if bind else "")
    text = "\n".join(lines)
    if os.geteuid() == 0 if as_root is None else as_root:
        text += "\n# added by sensornet broker: running as root, do not drop privileges\nuser root\n"
    return text


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now (int)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_taken(host: str, port: int) -> bool:
    """True when a TCP listener could not bind host:port now (another process listens there).

    Binds with SO_REUSEADDR as Mosquitto does, so connections in TIME_WAIT do not count.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Return True once a TCP connection to host:port succeeds, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """A Mosquitto process running broker/mosquitto.conf from a state directory.

    state_dir: holds mosquitto.conf (rendered), data/ and mosquitto.log (and passwd by default).
    accounts: name -> password (str) written to the password file before start.
    password_file: default state_dir/passwd (`sensornet broker` uses broker/passwd, as Docker does).
    tls_port, ws_port: the TLS and WebSocket listeners (certificates in tls_dir), None leaves them out.
    uid: run Mosquitto as this uid and the group of the same number (root only; the image's 1883).
    Use as a context manager, or call start() and stop().
    """

    def __init__(self, state_dir: Path, port: int = DEFAULT_PORT, bind: str | None = None,
                 accounts: dict[str, str] | None = None, config: Path | None = None,
                 password_file: Path | None = None, tls_dir: Path | None = None, tls_port: int | None = None,
                 ws_port: int | None = None, uid: int | None = None):
        self.state_dir = Path(state_dir)
        self.port, self.tls_port, self.ws_port = port, tls_port, ws_port
        self.bind = bind
        self.accounts = dict(accounts or {})
        self.config_template = Path(config or paths.BROKER_DIR / "mosquitto.conf")
        self.password_file = Path(password_file or self.state_dir / "passwd")
        self.tls_dir = Path(tls_dir or DEFAULT_TLS_DIR)
        self.uid = uid
        self.acl_source = paths.BROKER_DIR / "acl"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.state_dir / "mosquitto.log"

    @property
    def host(self) -> str:
        return self.bind if self.bind and self.bind != "0.0.0.0" else "127.0.0.1"

    @property
    def ports(self) -> list[int]:
        """The ports it listens on (int): plain, then TLS and WebSocket when on."""
        return [p for p in (self.port, self.tls_port, self.ws_port) if p]

    def prepare(self) -> Path:
        """Write the rendered config and the accounts; return the config's path."""
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)
        if self.accounts or not self.password_file.exists():
            write_accounts(self.password_file, self.accounts)
        conf = self.state_dir / "mosquitto.conf"
        conf.write_text(render_config(self.config_template.read_text(), self.state_dir, self.port, self.bind,
                                      acl_file=self.install_acl(), password_file=self.password_file,
                                      tls_dir=self.tls_dir,
                                      tls_port=self.tls_port, ws_port=self.ws_port,
                                      as_root=False if self.uid is not None else None))
        if self.uid is not None:  # Mosquitto writes its database as that user
            self._check_readable(self.password_file)
            for path in (self.state_dir, self.state_dir / "data", conf, *(self.state_dir / "data").iterdir()):
                os.chown(path, self.uid, self.uid)
        return conf

    def install_acl(self) -> Path:
        """The ACL file Mosquitto reads (Path): broker/acl itself, or, when it runs as `self.uid`, a
        copy in the state directory owned by that uid (mode 0600), since the checkout may sit where
        that user cannot reach (a 0700 home or temporary directory). Called again on a change."""
        if self.uid is None:
            return self.acl_source
        copy = self.state_dir / "acl"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(".new")
        shutil.copyfile(self.acl_source, partial)
        os.chown(partial, self.uid, self.uid)
        partial.chmod(0o600)
        partial.replace(copy)
        return copy

    def _check_readable(self, path: Path) -> None:
        """Raise BrokerError when `path` is not readable by uid and gid `self.uid` (as Mosquitto will be)."""
        st = path.stat()
        if not ((st.st_uid == self.uid and st.st_mode & 0o400) or (st.st_gid == self.uid and st.st_mode & 0o040)
                or st.st_mode & 0o004):
            raise BrokerError(f"{path} (owner {st.st_uid}:{st.st_gid}, mode {st.st_mode & 0o777:o}) cannot be read "
                              f"by uid {self.uid}, which runs mosquitto: `sudo chown {self.uid}:{self.uid} {path}` "
                              "(`sudo sensornet broker add-account` does this)")

    def _check_ports(self) -> None:
        for port in self.ports:
            if port_taken(self.bind or "0.0.0.0", port):
                raise BrokerError(
                    f"port {port} on {self.bind or 'every interface'} is in use by another process (often "
                    "Debian's own mosquitto.service, enabled by `apt-get install mosquitto`: "
                    "`sudo systemctl disable --now mosquitto`; or pick another port with --port)")

    def start(self, timeout: float = 10.0, stdout: IO[bytes] | None = None) -> Broker:
        """Start Mosquitto and wait until it accepts connections on every port.

        stdout: where Mosquitto's log goes (a file object); default state_dir/mosquitto.log.
        Raises BrokerError when a port is taken, or it exits or does not listen within `timeout` s.
        """
        self._check_ports()
        command = [find_tool("mosquitto"), "-c", str(self.prepare())]
        # its own session: a Ctrl-C on the terminal reaches only us, and we stop it (stop())
        ids = {"user": self.uid, "group": self.uid, "extra_groups": []} if self.uid is not None else {}
        # Mosquitto keeps its own descriptor of the log file
        with open(self.log_path, "ab") if stdout is None else contextlib.nullcontext(stdout) as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, **ids)  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout
        waiting = list(self.ports)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status = self.process.returncode
                self._closed()
                raise BrokerError(f"mosquitto exited with status {status}; see "
                                  f"{self.log_path if stdout is None else 'its log above'}")
            waiting = [p for p in waiting if not wait_for_port(self.host, p, 0.2)]
            if not waiting and self.process.poll() is None:
                return self
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port(s) {waiting} within {timeout} s")

    def reload(self, timeout: float = 5.0) -> None:
        """Make the running Mosquitto read its password file and ACL again (SIGHUP), and return once
        it has: a fresh password for the probe account (`reload-probe`, granted nothing by the ACL)
        goes into the file with the change, and the reload is done when that password is accepted.
        Raises BrokerError after `timeout` s."""
        if not self.process or self.process.poll() is not None:
            return
        probe = secrets.token_urlsafe(16)
        write_accounts(self.password_file, {PROBE_ACCOUNT: probe})
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if connack_code(self.host, self.port, PROBE_ACCOUNT, probe) == 0:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise BrokerError(f"mosquitto did not reload its password file within {timeout} s")

    def add_account(self, name: str, password: str) -> None:
        """Add an account (password file rewrite); a running broker reloads it before this returns."""
        self.accounts[name] = password
        write_accounts(self.password_file, {name: password})
        self.reload()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop Mosquitto with SIGTERM (it saves its persistence database), SIGKILL after `timeout` s."""
        childproc.stop(self.process, timeout)
        self._closed()

    def kill(self) -> None:
        """Stop Mosquitto with SIGKILL, as a crash would."""
        childproc.kill(self.process)
        self._closed()

    def _closed(self) -> None:
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def run(broker: Broker) -> int:
    """Run `broker` in the foreground until SIGTERM or SIGINT (then stop it, exit 0), or until
    Mosquitto exits by itself (exit 1). SIGHUP, or a change of the password file or the ACL, makes
    Mosquitto reload them."""
    requests: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a handler only notes it: see the loop
        signal.signal(sig, lambda signum, _frame: requests.append(signum))
    try:
        broker.start(stdout=sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None)
    except BrokerError as e:
        print(f"sensornet broker: {e}", file=sys.stderr)
        return 1
    watched = [broker.password_file, broker.acl_source]
    seen = [_mtime(p) for p in watched]
    tls = f", TLS {broker.tls_port} and WebSocket/TLS {broker.ws_port}" if broker.tls_port else ", no TLS"
    print(f"sensornet broker: mosquitto listening on {broker.bind or '0.0.0.0'}:{broker.port}{tls} "
          f"(accounts in {broker.password_file}, state in {broker.state_dir})", file=sys.stderr, flush=True)
    try:
        while True:
            if signal.SIGTERM in requests or signal.SIGINT in requests:
                return 0
            process = broker.process
            if process is None or process.poll() is not None:
                status = process.returncode if process else None
                print(f"sensornet broker: mosquitto exited by itself with status {status}", file=sys.stderr)
                return 1
            now = [_mtime(p) for p in watched]
            if now != seen or signal.SIGHUP in requests:
                requests[:] = [r for r in requests if r != signal.SIGHUP]
                seen = now
                print("sensornet broker: reloading the password file and ACL", file=sys.stderr, flush=True)
                broker.install_acl()
                process.send_signal(signal.SIGHUP)
            time.sleep(0.1)
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["add-account"]:
        return add_account_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="sensornet broker",
        description="Run Mosquitto with broker/mosquitto.conf, broker/acl and broker/passwd using the Debian "
                    "mosquitto binary (for machines without Docker; with Docker use `docker compose up`). "
                    "Stops on SIGTERM or Ctrl-C; reloads on SIGHUP and when the password file changes. "
                    "`sensornet broker add-account NAME` adds an account (--help there).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="plain MQTT listener port (default 1883)")
    parser.add_argument("--tls-port", type=int, default=DEFAULT_TLS_PORT, help="MQTT over TLS port (default 8883)")
    parser.add_argument("--ws-port", type=int, default=DEFAULT_WS_PORT,
                        help="MQTT over WebSocket with TLS, for browsers (default 9001)")
    parser.add_argument("--tls-dir", type=Path, default=DEFAULT_TLS_DIR,
                        help="server.crt and server.key (scripts/make-tls.sh; default broker/tls); without them "
                             "the TLS and WebSocket listeners are left out")
    parser.add_argument("--no-tls", action="store_true", help="leave the TLS and WebSocket listeners out")
    parser.add_argument("--bind", default=None, help="listen on this address only (default: every interface)")
    parser.add_argument("--passwd", type=Path, default=DEFAULT_PASSWD,
                        help="the Mosquitto password file (default broker/passwd, the one Docker mounts)")
    parser.add_argument("--state-dir", type=Path, default=paths.STATE_DIR / "broker",
                        help="directory for the persistence database and rendered config (default .sensornet/broker)")
    parser.add_argument("--uid", type=int, default=None,
                        help=f"run mosquitto as this uid and group (as root; {BROKER_UID} is the Docker image's "
                             "`mosquitto` user, which owns broker/passwd after `sudo sensornet broker add-account`)")
    parser.add_argument("--account", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.account:
        print("sensornet broker: --account: passwords on the command line are visible to every user (ps); "
              "add accounts with `sensornet broker add-account NAME` (password from a prompt, a file, stdin "
              "or $SENSORNET_ACCOUNT_PASSWORD)", file=sys.stderr)
        return 2
    tls = not args.no_tls and (args.tls_dir / "server.crt").exists() and (args.tls_dir / "server.key").exists()
    if not args.no_tls and not tls:
        print(f"sensornet broker: no TLS listeners: {args.tls_dir}/server.crt or server.key missing "
              "(make them with scripts/make-tls.sh)", file=sys.stderr)
    if not args.passwd.exists():
        print(f"sensornet broker: --passwd {args.passwd}: no such file; add an account first: "
              "`sensornet broker add-account bridge`", file=sys.stderr)
        return 2
    if args.uid is None and not os.access(args.passwd, os.R_OK):
        print(f"sensornet broker: --passwd {args.passwd}: not readable by this user (after `sudo sensornet broker "
              f"add-account` it is uid {BROKER_UID}'s): run as root, with --uid {BROKER_UID} (the systemd unit)",
              file=sys.stderr)
        return 2
    broker = Broker(args.state_dir, port=args.port, bind=args.bind, password_file=args.passwd,
                    tls_dir=args.tls_dir, tls_port=args.tls_port if tls else None,
                    ws_port=args.ws_port if tls else None, uid=args.uid)
    return run(broker)
