# Error codes on the red LED (GPIO0, active low). While a fault lasts the LED gives N short
# blinks (200 ms on, 200 ms off), then stays dark 1.8 s, and repeats. With several faults the
# lowest code shows. Codes (the README's table):
from machine import Pin
from micropython import const

try:
    import asyncio
except ImportError:  # MicroPython 1.19/1.20
    import uasyncio as asyncio

WIFI = const(1)  # Wi-Fi connection failed
BROKER = const(2)  # broker connection failed
IMPORT = const(3)  # library import failed
PUBLISH = const(4)  # publish failed
SENSOR = const(5)  # sensor (I2C) error
CONFIG = const(6)  # config missing or invalid

_BLINK_MS = const(200)
_PAUSE_MS = const(1600)  # after the last blink's 200 ms off: 1.8 s dark between groups
_faults = 0  # bit N set: code N active


def set(code):
    global _faults
    _faults |= 1 << code


def clear(code):
    global _faults
    _faults &= ~(1 << code)


def active():
    """The code the LED shows now (int, 1-6), or 0 when there is no fault."""
    for code in range(1, 7):
        if _faults & (1 << code):
            return code
    return 0


async def run(pin=0):
    """Task: blink the active code on `pin` (active low) forever."""
    led = Pin(pin, Pin.OUT, value=1)
    while True:
        code = active()
        if not code:
            led(1)
            await asyncio.sleep_ms(_BLINK_MS)
            continue
        for _ in range(code):
            led(0)
            await asyncio.sleep_ms(_BLINK_MS)
            led(1)
            await asyncio.sleep_ms(_BLINK_MS)
        await asyncio.sleep_ms(_PAUSE_MS)
