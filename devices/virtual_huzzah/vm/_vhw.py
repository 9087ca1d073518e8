# Virtual Feather Huzzah: the hardware state shared by the machine and network models.
#
# Runs inside the MicroPython VM. The host (virtual_huzzah.board.VirtualBoard) and the models
# talk through the directory named by $VIRTUAL_HUZZAH_HW:
#   state.json  written by the host (atomic rename): the world the board lives in
#               {"chip_id": "00c0ff01", "mac": "5ccf7fc0ff01", "lux": 250.0, "ir_ratio": 0.3,
#                "i2c": {"57": {"model": "tsl2561", "id": 80}}, "ap": {"ssid": ..., "password": ...} | null}
#               plus "reset_cause" (int, machine.reset_cause()) and "inputs" ({"0": 0}: GPIO0 held low)
#   events.log  appended by the models: "<unix time ms> <kind> <args...>" per line, e.g.
#               "1795270910123 pin 0 0" (GPIO0 driven low), "1795270910500 wlan 1 active 0"
#   wdt         written by the watchdog model: the unix time in ms of the last feed
#   rtc.bin     RTC memory (machine.RTC().memory()); the host deletes it at power-on
import json
import os

import utime as time  # the built-in: the host's wall clock (vm/time.py models the board's RTC)

_DIR = os.getenv("VIRTUAL_HUZZAH_HW") or "."
_REREAD_MS = 200

_WDT_WRITE_MS = 250  # feeds are written at most this often

_state = None
_read_at = 0
_events = None
_fed_at = None


def state():
    """The host's state.json as a dict, re-read at most every 200 ms."""
    global _state, _read_at
    now = time.ticks_ms()
    if _state is None or time.ticks_diff(now, _read_at) >= _REREAD_MS:
        try:
            with open(_DIR + "/state.json") as f:
                _state = json.load(f)
        except (OSError, ValueError):
            if _state is None:
                raise
        _read_at = now
    return _state


def event(*args):
    """Append one line to events.log, stamped with the wall-clock time in ms."""
    global _events
    if _events is None:
        _events = open(_DIR + "/events.log", "a")
    line = " ".join(str(a) for a in args)
    _events.write(f"{time.time_ns() // 1000000} {line}\n")
    _events.flush()


def ms():
    return time.ticks_ms()


def path(name):
    """Path (str) of a file in the shared hardware directory."""
    return _DIR + "/" + name


def wdt_feed(now):
    """Record a watchdog feed for the host (at most every 250 ms unless `now`)."""
    global _fed_at
    t = time.ticks_ms()
    if now or _fed_at is None or time.ticks_diff(t, _fed_at) >= _WDT_WRITE_MS:
        _fed_at = t
        with open(path("wdt"), "w") as f:
            f.write(str(time.time_ns() // 1000000))
