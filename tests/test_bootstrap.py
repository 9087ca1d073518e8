"""bootstrap.sh end to end: a virtual board that holds no firmware yet, provisioned through its
virtual serial console with the real mpremote and rshell, until its MAC arrives on
connect/<client_id> through the real broker; the esptool flash step checked by dry run."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import MONITOR_PASSWORD, REPO, Subscriber
from virtual_huzzah.board import DEPLOY_DIR, AccessPoint, VirtualBoard

pytestmark = pytest.mark.e2e
CHIP_ID = 0xC0FF01
CLIENT_ID, MAC = "huzzah-01ffc000", "5c:cf:7f:c0:ff:01"


def bootstrap(*args, env=None, timeout=150):
    return subprocess.run(["bash", str(REPO / "bootstrap.sh"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


@pytest.fixture
def blank_board(tmp_path):
    """A virtual board with nothing on its filesystem and a serial console in tmp_path/serial."""
    board = VirtualBoard(tmp_path / "board", CHIP_ID, firmware_dir=tmp_path / "no-firmware", config=None,
                         serial_dir=tmp_path / "serial", access_point=AccessPoint())
    yield board.start()
    board.stop()


def provision(tmp_path, broker, board, *extra):
    """bootstrap.sh --skip-flash against `board`: its port found as the only one in tmp_path/serial,
    the account added to the broker's own password file and the broker reloaded (SIGHUP)."""
    ap = AccessPoint()
    assert broker.process is not None
    return bootstrap("--skip-flash", "--wifi-ssid", ap.ssid, "--mqtt-host", "127.0.0.1",
                     "--mqtt-port", str(broker.port), "--passwd-file", str(broker.state_dir / "passwd"),
                     "--reload-broker", f"kill -HUP {broker.process.pid}", "--watch-account", "monitor",
                     "--interval", "2", "--wait", "40", *extra,
                     env={"SENSORNET_WIFI_PASSWORD": ap.password, "SENSORNET_WATCH_PASSWORD": MONITOR_PASSWORD,
                          "SENSORNET_SERIAL_PORTS": str(tmp_path / "serial" / "*")})


def deployed() -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in DEPLOY_DIR.iterdir()}


def test_mpremote_provisions_a_blank_board_until_its_mac_arrives_and_again(tmp_path, broker, blank_board):
    assert list(blank_board.fs.iterdir()) == []  # no firmware yet: the board idles at its REPL
    result = provision(tmp_path, broker, blank_board)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"serial port {tmp_path / 'serial' / CLIENT_ID} (the only one found)" in result.stdout
    assert f"online       connect/{CLIENT_ID} = {MAC}" in result.stdout

    files = {f.name: f.read_bytes() for f in blank_board.fs.iterdir()}
    config = json.loads(files.pop("config.json"))
    assert files == deployed()  # the .mpy deployment, byte for byte
    assert config["mqtt_user"] == CLIENT_ID
    assert config["mqtt_password"] not in result.stdout + result.stderr
    passwd = broker.state_dir / "passwd"
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    sub = Subscriber(broker.port)
    try:
        assert sub.wait_for(f"connect/{CLIENT_ID}")[0][1] == MAC.encode()  # retained, from the board
    finally:
        sub.close()

    # again, on the board that now runs the firmware (and its watchdog): same result, one account
    again = provision(tmp_path, broker, blank_board)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"online       connect/{CLIENT_ID} = {MAC}" in again.stdout
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()].count(CLIENT_ID) == 1
    assert json.loads((blank_board.fs / "config.json").read_text())["mqtt_password"] != config["mqtt_password"]


def test_rshell_provisions_a_blank_board_until_its_mac_arrives(tmp_path, broker, blank_board):
    result = provision(tmp_path, broker, blank_board, "--tool", "rshell")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(rshell)" in result.stdout
    assert f"online       connect/{CLIENT_ID} = {MAC}" in result.stdout
    files = {f.name: f.read_bytes() for f in blank_board.fs.iterdir()}
    del files["config.json"]
    assert files == deployed()


def esp8266_image(path: Path, size: int = 300_000) -> Path:
    path.write_bytes(b"\xe9" + bytes(size - 1))  # the ESP8266 image header's magic byte, then padding
    return path


def test_dry_run_prints_the_esptool_5_steps_and_changes_nothing(tmp_path):
    image = esp8266_image(tmp_path / "ESP8266_GENERIC.bin")
    sha256 = subprocess.run(["sha256sum", str(image)], capture_output=True, text=True, check=True).stdout.split()[0]
    passwd, config = tmp_path / "passwd", tmp_path / "config.json"
    result = bootstrap("--dry-run", "--mac", MAC.upper(), "--port", "/dev/ttyUSB0", "--firmware", str(image),
                       "--firmware-sha256", sha256, "--wifi-ssid", "home", "--mqtt-host", "192.0.2.10",
                       "--passwd-file", str(passwd), "--config-out", str(config),
                       env={"SENSORNET_WIFI_PASSWORD": "x"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "would run: .venv/bin/esptool --port /dev/ttyUSB0 erase-flash" in out
    assert f"would run: .venv/bin/esptool --port /dev/ttyUSB0 --baud 460800 write-flash --flash-size detect 0 {image}" \
        in out
    assert "esptool.py" not in out
    assert "write_flash" not in out
    assert f"client id {CLIENT_ID}" in out
    assert "would run: .venv/bin/mpremote connect /dev/ttyUSB0 fs cp build/firmware/boot.py" in out
    assert "would run: timeout 60 .venv/bin/mpremote connect /dev/ttyUSB0 exec" in out
    assert "safemode.stable" in out
    assert "nothing was changed" in out
    assert not passwd.exists()
    assert not config.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--mac", "x"], "--mac"),
    (["--mqtt-port", "0"], "--mqtt-port"),
    (["--tool", "ampy"], "--tool"),
    (["--wifi-password", "visible-in-ps"], "--wifi-password-file"),
    (["--firmware", "IMAGE"], "--firmware"),  # a small file: a failed download
    (["--firmware", "ESP", "--firmware-sha256", "00" * 32], "--firmware-sha256"),
    (["--bogus"], "unknown option"),
])
def test_bad_arguments_exit_2_naming_the_option(tmp_path, args, message):
    (tmp_path / "IMAGE").write_bytes(b"<html>not found</html>")
    esp8266_image(tmp_path / "ESP")
    args = [str(tmp_path / a) if a in ("IMAGE", "ESP") else a for a in args]
    base = ["--dry-run", "--mac", MAC, "--port", "/dev/ttyUSB0", "--skip-flash", "--wifi-ssid", "s", "--mqtt-host", "h"]
    if "--firmware" in args:
        base.remove("--skip-flash")
    result = bootstrap(*base, *args, env={"SENSORNET_WIFI_PASSWORD": "x"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_the_port_must_be_the_only_candidate(tmp_path):
    for name in ("ttyUSB0", "ttyUSB1"):
        (tmp_path / name).touch()
    result = bootstrap("--dry-run", "--mac", MAC, "--skip-flash", "--wifi-ssid", "s", "--mqtt-host", "h",
                       env={"SENSORNET_SERIAL_PORTS": str(tmp_path / "tty*"), "SENSORNET_WIFI_PASSWORD": "x"})
    assert result.returncode == 2
    assert "2 serial ports found" in result.stderr
    assert "pass --port" in result.stderr


def test_help_describes_the_steps_and_every_option():
    result = bootstrap("--help")
    assert result.returncode == 0
    for word in ("--skip-flash", "--tool mpremote|rshell", "--firmware-sha256", "--dry-run", "connect/<client_id>",
                 "esptool 5", "--wifi-password-file", "--reload-broker"):
        assert word in result.stdout
