"""The virtual Feather Huzzah itself: a 32-bit VM with the ESP8266's heap, the .mpy deployment,
resets (machine.reset(), the watchdog, the RST button) with reset_cause() and RTC memory, the
user button, safe mode, and a Wi-Fi model that aborts the board's connections when the access
point goes away. Real firmware or small firmware of the test's own, a real broker."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import wait_until
from virtual_huzzah.board import DEPLOY_DIR, HARD_RESET, SOFT_RESET, WDT_RESET, AccessPoint, VirtualBoard
from virtual_huzzah.runtime import ESP8266_HEAP, find_micropython, model_overhead, vm_facts

pytestmark = pytest.mark.e2e

CHIP = 0xC0FF01

# Firmware of the test's own: print why it started and what RTC memory holds, add a byte to it,
# then reset by machine.reset() on the first boot and by starving the watchdog on the second.
RESETTING = """\
import time
import machine

rtc = machine.RTC()
mem = rtc.memory()
print("boot", machine.reset_cause(), len(mem), machine.Pin(0, machine.Pin.IN).value())
rtc.memory(mem + b"x")
if len(mem) == 0:
    machine.reset()
if len(mem) == 1:
    machine.WDT().feed()
    time.sleep(10)  # never fed again: the watchdog resets the chip after about 3.2 s
print("settled")
while True:
    time.sleep(1)
"""


def boots(board: VirtualBoard) -> list[list[int]]:
    return [[int(w) for w in line.split()[1:]] for line in board.console_text().splitlines()
            if line.startswith("boot ")]


def test_the_vm_is_32_bit_with_the_esp8266_heap_and_runs_the_mpy_deployment(broker, subscriber, make_board):
    micropython = find_micropython()
    assert vm_facts(micropython)[0] == 32
    board = make_board(CHIP, broker.port, broker)
    assert board.heap_bytes == ESP8266_HEAP + model_overhead(micropython)
    deployed = sorted(p.name for p in board.fs.iterdir() if p.name != "config.json")
    assert deployed == sorted(p.name for p in DEPLOY_DIR.iterdir())
    assert [n for n in deployed if n.endswith(".py")] == ["boot.py", "main.py"]
    subscriber.wait_for(f"sensors/{board.client_id}/tsl2561", count=2)
    free = wait_until(board.heap_free, 10, "the firmware's heap report")
    assert 0 < free[-1] < ESP8266_HEAP  # what gc.mem_free() says on the board: the models are not counted


def test_resets_keep_the_filesystem_and_rtc_memory_and_report_their_cause(tmp_path):
    firmware = tmp_path / "firmware"
    firmware.mkdir()
    (firmware / "main.py").write_text(RESETTING)
    board = VirtualBoard(tmp_path / "board", CHIP, firmware_dir=firmware, config={})
    try:
        board.start()
        board.wait_console("settled", 30)
        assert [cause for _, cause in board.resets] == [SOFT_RESET, WDT_RESET]
        # reset_cause() 0 = PWRON_RESET, then machine.reset()'s and the watchdog's; RTC memory grows
        assert boots(board) == [[0, 0, 1], [SOFT_RESET, 1, 1], [WDT_RESET, 2, 1]]
        board.hold_button()
        board.reset()  # the RST button, with the user button held
        wait_until(lambda: len(boots(board)) == 4, 10, "a fourth boot")
        assert boots(board)[-1] == [HARD_RESET, 3, 0]
        board.stop()
        board.hold_button(False)
        board.start()  # a power cycle clears the RTC memory
        wait_until(lambda: len(boots(board)) == 5, 10, "a boot after power-on")
        assert boots(board)[-1] == [0, 0, 1]
    finally:
        board.stop()


def test_safe_mode_when_the_user_button_is_held(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, start=False)
    board.hold_button()
    board.start()
    board.wait_console("safe mode (button held)", 15)
    board.wait_console("REPL", 5)
    assert board.running  # idle at the REPL, not ended
    assert board.pin_timeline(2)[-1][1] == 0  # the blue LED is lit
    time.sleep(3)  # the thing under test: nothing is started for a while
    assert [level for _, level in board.pin_timeline(0)] == []  # the red LED never blinks
    assert subscriber.on(f"connect/{board.client_id}") == []
    assert not [e for e in board.events() if e[1] == "wlan" and e[2][1:2] == ["connect"]]  # no Wi-Fi either


def test_safe_mode_after_five_boots_in_a_row_that_reset_early(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker)
    for n in range(1, 6):
        wait_until(lambda n=n: board.console_text().count("boot: wifi") >= n, 15, f"boot {n}")
        board.reset()
    board.wait_console("safe mode (5 boots in a row reset within 60 s)", 15)
    board.stop()
    board.start()  # a power cycle clears the counter: the application starts again
    subscriber.wait_for(f"sensors/{board.client_id}/tsl2561", timeout=20)


def test_taking_the_access_point_away_aborts_the_boards_connections(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker)  # keep alive 60 s: the broker would wait 90 s
    subscriber.wait_for(f"sensors/{board.client_id}/tsl2561")
    since = time.time()
    board.set_access_point(None)
    # the broker sees the TCP connection go (no DISCONNECT): it publishes the last will at once
    wait_until(lambda: [m for m in subscriber.on(f"status/{board.client_id}") if m[1] == b"offline"], 10,
               "the last will, well before the 90 s keepalive would have fired it")
    wait_until(lambda: 1 in board.blink_codes(since), 20, "LED code 1")
    board.set_access_point(AccessPoint())
    subscriber.wait_for(f"connect/{board.client_id}", count=2, timeout=30)
    assert json.loads(subscriber.on(f"sensors/{board.client_id}/tsl2561")[-1][1])["lux"] is not None
