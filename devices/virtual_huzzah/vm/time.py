# Virtual Feather Huzzah: model of the esp8266 port's `time` module (C on the board).
#
# Runs inside the MicroPython VM, ahead of the unix port's built-in `time` on sys.path (the
# built-in stays reachable as `utime`). What differs from the unix port: the esp8266 port counts
# calendar time in seconds since 2000-01-01 00:00:00 UTC (gmtime(0)[0] == 2000) from its RTC,
# which starts at 0 at power-up and reset, until machine.RTC().datetime() sets it (ntptime's
# settime() does). time() returns an int. ticks_*, sleep* are the built-in's.
import utime
from utime import sleep, sleep_ms, sleep_us, ticks_add, ticks_cpu, ticks_diff, ticks_ms, ticks_us  # noqa: F401

_UNIX_2000 = 946684800  # 2000-01-01 in Unix seconds
_set_s = 0  # the RTC's seconds since 2000 at ticks _set_ms
_set_ms = ticks_ms()


def _now_ms():
    return _set_s * 1000 + ticks_diff(ticks_ms(), _set_ms)


def set_rtc(seconds_2000):
    """machine.RTC().datetime(): the clock now reads `seconds_2000` (int, since 2000-01-01)."""
    global _set_s, _set_ms
    _set_s = seconds_2000
    _set_ms = ticks_ms()


def time():
    return _now_ms() // 1000


def time_ns():
    return _now_ms() * 1000000


def gmtime(secs=None):
    return utime.gmtime((time() if secs is None else secs) + _UNIX_2000)


localtime = gmtime  # no time zones on the board


def mktime(t):
    return utime.mktime(t) - _UNIX_2000
