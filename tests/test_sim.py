"""`sensornet sim` keeps its fleet honest: a board that resets itself (machine.reset()) is powered up
again, as a real board restarts; a board whose MicroPython VM dies otherwise stops the fleet with
exit status 1 and a message naming it."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests.helpers import DEVICE_PASSWORD, Sensornet, wait_until
from virtual_huzzah.board import RESET_EXIT_STATUS, VirtualBoard, client_id_for
from virtual_huzzah.fleet import supervise

pytestmark = pytest.mark.e2e

CHIP = 0xC0FF01
CLIENT_ID = client_id_for(CHIP)  # huzzah-01ffc000

# Firmware of a board that resets itself once: a marker file on its filesystem (which a reset
# keeps) tells the second boot from the first.
RESET_ONCE = """\
import os
import time

import machine

try:
    os.stat("reset-once")
except OSError:
    open("reset-once", "w").close()
    print("main: first boot, machine.reset()")
    machine.reset()
print("main: booted again")
while True:  # then idle, as firmware does, until the test powers the board off
    time.sleep(1)
"""


def firmware(tmp_path: Path, main_py: str) -> Path:
    """A firmware directory (Path) holding only this main.py."""
    fw = tmp_path / "firmware"
    fw.mkdir()
    (fw / "main.py").write_text(main_py)
    return fw


def test_supervise_powers_a_reset_board_up_again(tmp_path, capsys):
    board = VirtualBoard(tmp_path / "board", CHIP, firmware_dir=firmware(tmp_path, RESET_ONCE))
    stop = threading.Event()
    status = []
    watcher = threading.Thread(target=lambda: status.append(supervise([board], stop, None, poll_s=0.1)))
    board.start()
    watcher.start()
    try:
        wait_until(lambda: "main: booted again" in board.console, 15, "the board's second boot")
        assert board.running
    finally:
        stop.set()
        watcher.join(10)
        board.stop()
    assert status == [0]  # stopped by its stop event, not by a dead board
    assert board.console == ["main: first boot, machine.reset()", "main: booted again"]
    assert (board.fs / "reset-once").exists()
    assert capsys.readouterr().err == (f"sensornet sim: {CLIENT_ID} reset itself (machine.reset()); "
                                       "it starts again\n")
    assert RESET_EXIT_STATUS == 100  # what vm/machine.py's reset() exits with


def test_supervise_returns_1_for_a_board_whose_vm_exits(tmp_path, capsys):
    main_py = 'print("main: giving up")\nraise SystemExit(3)\n'
    board = VirtualBoard(tmp_path / "board", CHIP, firmware_dir=firmware(tmp_path, main_py))
    board.start()
    try:
        assert supervise([board], threading.Event(), 30, poll_s=0.1) == 1
    finally:
        board.stop()
    assert board.console == ["main: giving up"]
    assert capsys.readouterr().err == (f"sensornet sim: {CLIENT_ID}: the MicroPython VM exited with status 3; "
                                       f"its console is in {board.root / 'console.log'}\n")


def children(pid: int) -> list[int]:
    """The process ids (ints) of `pid`'s child processes, from Linux's /proc/<pid>/stat."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)": state, ppid, ...
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_sim_exits_1_when_a_board_dies(broker, tmp_path):
    broker.add_account(CLIENT_ID, DEVICE_PASSWORD)
    state = tmp_path / "sim"
    sim = Sensornet("sim", "--count", "1", "--broker-host", "127.0.0.1", "--broker-port", str(broker.port),
                    "--password", DEVICE_PASSWORD, "--interval", "1", "--state-dir", str(state))
    try:
        sim.wait_line(f"{CLIENT_ID} | app: connected to 127.0.0.1:{broker.port}", "stdout", 30)
        [vm] = children(sim.process.pid)  # the board's micropython process
        os.kill(vm, signal.SIGKILL)  # the VM dies (not a reset)
        assert sim.wait(15) == 1
    finally:
        sim.stop()
    assert (f"sensornet sim: {CLIENT_ID}: the MicroPython VM exited with status -9; "
            f"its console is in {state / CLIENT_ID / 'console.log'}") in sim.stderr
