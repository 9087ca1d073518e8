# Conditional boot (safe mode): boot.py skips Wi-Fi and main.py skips the application, leaving the
# REPL free (to fix config.json or upload new firmware), when
#   - the user button (GPIO0 to ground) is held down while boot.py runs (press it just after
#     RST: held during the reset itself, the ESP8266 enters its ROM bootloader instead), or
#   - the 5 boots before this one each reset within 60 s (a boot loop): a counter in RTC memory,
#     which survives resets but not a power cycle. app.py calls stable() once a boot has lasted
#     STABLE_MS, which clears the counter.
# In safe mode the blue LED (GPIO2) is lit and the red one (GPIO0) dark (README, LED table).
from machine import RTC, Pin
from micropython import const

_MAGIC = const(0x5A)  # RTC memory: [_MAGIC, count of boots that did not last STABLE_MS]
_BOOT_LOOP = const(5)
STABLE_MS = const(60000)
active = False


def check():
    """Count this boot; return True (and set `active`) when the application must not start."""
    global active
    rtc = RTC()
    mem = rtc.memory()
    quick = mem[1] if len(mem) >= 2 and mem[0] == _MAGIC else 0
    rtc.memory(bytes((_MAGIC, min(quick + 1, 255))))
    button = Pin(0, Pin.IN).value() == 0
    active = button or quick >= _BOOT_LOOP
    if active:
        Pin(2, Pin.OUT, value=0)  # blue LED on (active low)
        why = "button held" if button else str(quick) + " boots in a row reset within 60 s"
        print("safe mode (" + why + "): the application does not start, the REPL is free")
    return active


def stable():
    """This boot has lasted: clear the boot-loop counter."""
    RTC().memory(bytes((_MAGIC, 0)))
