# Conditional boot (safe mode): boot.py skips Wi-Fi and main.py the application, leaving the REPL
# free (to fix config.json or upload new firmware), when
#   - the user button (GPIO0 to ground) is held down while the board boots (press it just after
#     RST: held during the reset itself, the ESP8266 enters its ROM bootloader instead), or
#   - the 5 boots before this one each reset within 60 s (a boot loop): a counter in RTC memory,
#     which survives resets but not a power cycle. app.py calls stable() once a boot has lasted
#     60 s, which clears the counter.
# boot.py calls check() first thing and main.py active(); both, and app.py, load this module only
# for the call and drop it after (its code costs no heap in between). RTC memory holds
# [_MAGIC, boots in a row that did not last 60 s, 1 when this boot is in safe mode].
# In safe mode the blue LED (GPIO2) is lit and the red one (GPIO0) dark (README, LED table).
from machine import RTC, Pin
from micropython import const

_MAGIC = const(0x5A)
_BOOT_LOOP = const(5)


def check():
    """Count this boot; return True when the application must not start (and light the blue LED)."""
    rtc = RTC()
    mem = rtc.memory()
    quick = mem[1] if len(mem) >= 2 and mem[0] == _MAGIC else 0
    button = Pin(0, Pin.IN).value() == 0
    safe = button or quick >= _BOOT_LOOP
    rtc.memory(bytes((_MAGIC, min(quick + 1, 255), 1 if safe else 0)))
    if safe:
        Pin(2, Pin.OUT, value=0)  # blue LED on (active low)
        why = "button held" if button else str(quick) + " boots in a row reset within 60 s"
        print("safe mode (" + why + "): the application does not start, the REPL is free")
    return safe


def active():
    """True when check() put this boot in safe mode."""
    mem = RTC().memory()
    return len(mem) >= 3 and mem[0] == _MAGIC and mem[2] == 1


def stable():
    """This boot has lasted: clear the boot-loop counter."""
    RTC().memory(bytes((_MAGIC, 0, 0)))
