"""The virtual board's serial console (virtual_huzzah.serialport) with the real mpremote, rshell
and pyserial: files listed, copied and removed, code run, Ctrl-C and Ctrl-D as on the board."""

import json
import subprocess
import time

import serial

from tests.helpers import DEVICE_PASSWORD, REPO, Sensornet, device_config, run_sensornet, wait_until
from virtual_huzzah.board import DEPLOY_DIR, WDT_RESET, VirtualBoard

BIN = REPO / ".venv" / "bin"  # mpremote and rshell: `make setup` installs the provision extra


def tool(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def blank_board(tmp_path, chip_id=0xC0FF01, **kwargs) -> VirtualBoard:
    return VirtualBoard(tmp_path / "board", chip_id, firmware_dir=tmp_path / "no-firmware", config=None,
                        serial_dir=tmp_path / "serial", **kwargs).start()


def test_mpremote_and_rshell_list_copy_remove_and_run_code(tmp_path):
    board = blank_board(tmp_path)
    port = str(board.serial.link)
    try:
        app = DEPLOY_DIR / "app.mpy"
        mp = tool("mpremote", "connect", port, "fs", "cp", str(app), ":app.mpy", "+", "fs", "ls", ":")
        assert mp.returncode == 0, mp.stdout + mp.stderr
        assert "app.mpy" in mp.stdout.splitlines()[-1]
        assert (board.fs / "app.mpy").read_bytes() == app.read_bytes()
        back = tmp_path / "back.mpy"
        assert tool("mpremote", "connect", port, "fs", "cp", ":app.mpy", str(back)).returncode == 0
        assert back.read_bytes() == app.read_bytes()
        run = tool("mpremote", "connect", port, "exec", "import os; print(sorted(os.listdir('/')), 6 * 7)")
        assert run.stdout.strip() == "['app.mpy'] 42"  # "/" is the board's flash
        err = tool("mpremote", "connect", port, "exec", "1/0")
        assert err.returncode == 1
        assert err.stdout.splitlines()[-1] == "ZeroDivisionError: divide by zero"
        assert "_board" not in err.stdout  # only the board's own frames
        assert tool("mpremote", "connect", port, "fs", "rm", ":app.mpy").returncode == 0
        assert not (board.fs / "app.mpy").exists()

        wifi = DEPLOY_DIR / "wifi.mpy"
        rs = tool("rshell", "--quiet", "--port", port, "--buffer-size", "512", "cp", str(wifi), "/pyboard/")
        assert rs.returncode == 0, rs.stdout + rs.stderr
        assert (board.fs / "wifi.mpy").read_bytes() == wifi.read_bytes()
        listing = tool("rshell", "--quiet", "--port", port, "ls", "-l", "/pyboard")
        assert f"{wifi.stat().st_size} " in listing.stdout
        assert "wifi.mpy" in listing.stdout
        assert tool("rshell", "--quiet", "--port", port, "cp", "/pyboard/wifi.mpy", str(back)).returncode == 0
        assert back.read_bytes() == wifi.read_bytes()
        assert tool("rshell", "--quiet", "--port", port, "rm", "/pyboard/wifi.mpy").returncode == 0
        assert list(board.fs.iterdir()) == []
        assert board.resets == []  # soft resets only: the chip never restarted
    finally:
        board.stop()
    assert not (tmp_path / "serial" / board.client_id).exists()  # the symlink goes with the board


def read_until(port: serial.Serial, text: bytes, timeout: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while text not in data and time.monotonic() < deadline:
        data += port.read(port.in_waiting or 1)
    assert text in data, f"no {text!r} on the console: {data[-500:]!r}"
    return data


def test_ctrl_d_soft_resets_into_uploaded_firmware_and_ctrl_c_stops_it(tmp_path, broker, subscriber):
    board = blank_board(tmp_path)
    broker.add_account(board.client_id, DEVICE_PASSWORD)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(device_config(board.client_id, broker.port)))
    try:
        files = [str(f) for f in sorted(DEPLOY_DIR.iterdir())]
        up = tool("mpremote", "connect", str(board.serial.link), "fs", "cp", *files, str(config), ":")
        assert up.returncode == 0, up.stdout + up.stderr
        assert not subscriber.on(f"connect/{board.client_id}")
        with serial.Serial(str(board.serial.link), 115200, timeout=0.2) as port:
            port.write(b"\r")
            read_until(port, b">>> ")
            port.write(b"print(1 + 1)\r")
            assert read_until(port, b">>> ").endswith(b"print(1 + 1)\r\n2\r\n>>> ")
            port.write(b"\x04")  # soft reset in the friendly REPL: boot.py, then main.py
            read_until(port, b"MPY: soft reboot\r\n")
            read_until(port, b"app: connected")
            assert subscriber.wait_for(f"connect/{board.client_id}")[0][1] == board.mac.encode()
            assert board.resets == []  # a soft reset: the chip did not restart
            port.write(b"\x03")  # Ctrl-C: KeyboardInterrupt in main.py, then the REPL
            out = read_until(port, b">>> ")
            assert b"KeyboardInterrupt" in out
        # nothing feeds the watchdog the firmware started, which the esp8266 port cannot stop
        wait_until(lambda: [cause for _, cause in board.resets] == [WDT_RESET], 15, "the watchdog's reset")
    finally:
        board.stop()


def test_sim_serial_dir_gives_blank_boards_a_console(tmp_path):
    serial_dir = tmp_path / "serial"
    assert run_sensornet("sim", "--blank").returncode == 2  # blank boards need a console
    sim = Sensornet("sim", "--count", "2", "--blank", "--serial-dir", str(serial_dir),
                           "--state-dir", str(tmp_path / "sim"))
    try:
        sim.wait_line("huzzah-02ffc000 serial console", timeout=30)
        links = wait_until(lambda: sorted(serial_dir.iterdir()) if len(list(serial_dir.iterdir())) == 2 else None, 10,
                           "two consoles")
        assert [p.name for p in links] == ["huzzah-01ffc000", "huzzah-02ffc000"]
        run = tool("mpremote", "connect", str(links[1]), "exec",
                   "import os, machine; print(os.listdir('/'), machine.unique_id().hex())")
        assert run.stdout.strip() == "[] 02ffc000"  # nothing on it yet
    finally:
        sim.stop()
    assert not list(serial_dir.iterdir())

