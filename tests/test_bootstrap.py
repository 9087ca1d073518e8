"""bootstrap.sh: everything but the serial port (flashing and uploading need a real board, so
--dry-run prints those steps); the config and broker account it makes work on a virtual board."""

import json
import shutil
import subprocess

import pytest

from sensornet.broker import Broker
from tests.helpers import REPO, Subscriber, free_port
from virtual_huzzah.board import DEPLOY_DIR, AccessPoint, VirtualBoard

pytestmark = pytest.mark.e2e


def bootstrap(*args, cwd=REPO):
    return subprocess.run(["bash", str(REPO / "bootstrap.sh"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_provisioned_config_and_account_bring_a_board_online(tmp_path):
    ap = AccessPoint()
    port = free_port()
    passwd, config = tmp_path / "passwd", tmp_path / "config.json"
    result = bootstrap("--dry-run", "--mac", "5C:CF:7F:C0:FF:01", "--port", "/dev/ttyUSB0", "--firmware", "fw.bin",
                       "--wifi-ssid", ap.ssid, "--wifi-password", ap.password, "--mqtt-host", "127.0.0.1",
                       "--mqtt-port", str(port), "--interval", "1", "--passwd-file", str(passwd),
                       "--config-out", str(config))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "client id huzzah-01ffc000" in out
    assert "erase_flash" in out
    assert "write_flash" in out
    deployed = sorted(f.name for f in DEPLOY_DIR.iterdir())  # the .mpy deployment: `make firmware`
    assert [n for n in deployed if n.endswith(".py")] == ["boot.py", "main.py"]
    for name in deployed:
        assert f"cp build/firmware/{name} /pyboard/" in out
    cfg = json.loads(config.read_text())
    assert cfg["mqtt_user"] == "huzzah-01ffc000"
    assert cfg["client_id"] is None
    assert passwd.read_text().startswith("huzzah-01ffc000:")
    assert cfg["mqtt_password"] not in passwd.read_text()  # hashed

    # the account in the bootstrap's password file, the config on the board: it comes online
    state = tmp_path / "broker"
    state.mkdir()
    shutil.copy(passwd, state / "passwd")
    with Broker(state, port=port, bind="127.0.0.1", accounts={"bridge": "b"}) as broker:
        sub = Subscriber(broker.port, password="b")
        board = VirtualBoard(tmp_path / "board", 0xC0FF01, config=cfg, access_point=ap)
        try:
            board.start()
            sub.wait_for("connect/huzzah-01ffc000")
            assert sub.on("connect/huzzah-01ffc000")[0][1] == b"5c:cf:7f:c0:ff:01"
        finally:
            board.stop()
            sub.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--dry-run", "--mac", "x", "--wifi-ssid", "s", "--mqtt-host", "h"], "--mac"),
    (["--dry-run", "--mac", "5c:cf:7f:00:00:01", "--mqtt-host", "h"], "--wifi-ssid"),
    (["--dry-run", "--mac", "5c:cf:7f:00:00:01", "--wifi-ssid", "s", "--mqtt-host", "h", "--mqtt-port", "0"],
     "--mqtt-port"),
    (["--wifi-ssid", "s", "--mqtt-host", "h"], "--port"),
    (["--bogus"], "unknown option"),
])
def test_bad_arguments_exit_2_naming_the_option(args, message):
    result = bootstrap(*args)
    assert result.returncode == 2
    assert message in result.stderr
