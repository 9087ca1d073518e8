# Virtual Feather Huzzah: model of the esp8266 port's `machine` module (a C module on the board).
#
# Runs inside the MicroPython VM, ahead of the built-in unix `machine` on sys.path. Models what
# the board has: GPIO pins (driven levels are logged with timestamps, so the host sees the LEDs),
# the software I2C bus on GPIO5/GPIO4 with the devices the host puts on it (a TSL2561 per
# its datasheet; a BME280, _bme280.py), unique_id(), reset() and reset_cause(), the watchdog
# (WDT) and RTC memory.
# Behaviour follows MicroPython's esp8266 port docs: an I2C address that does not answer
# raises OSError(19) (ENODEV); invalid pins raise ValueError.
import sys
import time  # the time model (vm/time.py): the RTC's calendar time
from binascii import unhexlify

import _vhw
from _bme280 import BME280  # always loaded: what the models keep is measured once for every board

_PINS = (0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16)  # the ESP8266's usable GPIOs
_ENODEV = 19
_levels = {}  # pin id -> level last driven; GPIO0 and GPIO2 are pulled up (LEDs dark)
_chips = {}  # I2C address -> device model, alive while the host keeps it on the bus


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        if id not in _PINS:
            raise ValueError("invalid pin")
        self._id = id
        self._mode = Pin.IN
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None):
        if mode != -1:
            self._mode = mode
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self._mode == Pin.IN:  # what the outside world holds the pin at (a button), else pulled up
                level = _vhw.state().get("inputs", {}).get(str(self._id))
                if level is not None:
                    return level
            return _levels.get(self._id, 1)
        v = 1 if v else 0
        if _levels.get(self._id) != v:
            _levels[self._id] = v
            _vhw.event("pin", self._id, v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, hard=False):
        return None


class TSL2561:
    """TSL2561 per the TAOS059 datasheet: command byte (bit 7 CMD, bits 3:0 address, reads
    auto-increment), CONTROL power (0x03), TIMING gain bit 4 and INTEG bits 1:0, ID, DATA0/DATA1
    little-endian. The channels read 0 until an integration has completed after power-up or a
    TIMING change; counts follow the host's light level (lux and IR/broadband ratio, inverting
    the T-package lux formula), scaled by integration time and gain and clipped at the ADC ceiling.
    """

    INTEG_MS = (13.7, 101, 402)
    CEILING = (5047, 37177, 65535)

    def __init__(self, part_id):
        self.regs = bytearray(16)
        self.regs[0x0A] = part_id
        self.regs[0x01] = 0x02  # power-on default: 1x gain, 402 ms
        self.ptr = 0
        self.t0 = None  # ticks_ms when the current integration cycle started; None: powered down

    def write(self, buf):
        if not len(buf):
            return
        cmd = buf[0]
        if not cmd & 0x80:
            return  # not a command byte: the part ignores it
        self.ptr = cmd & 0x0F
        for b in buf[1:]:
            self._set(self.ptr, b)
            self.ptr = (self.ptr + 1) & 0x0F

    def _set(self, reg, v):
        if reg == 0x00:
            v &= 0x03
            if v == 0x03 and self.t0 is None:
                self.t0 = _vhw.ms()
            elif v != 0x03:
                self.t0 = None
            self.regs[0] = v
        elif reg == 0x01:
            self.regs[1] = v & 0x1B
            if self.t0 is not None:
                self.t0 = _vhw.ms()  # a TIMING write restarts integration
        elif 0x02 <= reg <= 0x06:
            self.regs[reg] = v

    def read(self, n):
        if self.ptr >= 0x0C:
            self._latch()
        out = bytearray(n)
        for i in range(n):
            out[i] = self.regs[self.ptr]
            self.ptr = (self.ptr + 1) & 0x0F
        return out

    def _latch(self):
        timing = self.regs[1]
        i = timing & 0x03
        ch0 = ch1 = 0
        if self.t0 is not None and i != 3 and _vhw.ms() - self.t0 >= self.INTEG_MS[i]:
            st = _vhw.state()
            lux = float(st.get("lux", 0))
            r = min(max(float(st.get("ir_ratio", 0.3)), 0.0), 1.29)
            if r <= 0.50:
                per_count = 0.0304 - 0.062 * r ** 1.4
            elif r <= 0.61:
                per_count = 0.0224 - 0.031 * r
            elif r <= 0.80:
                per_count = 0.0128 - 0.0153 * r
            else:
                per_count = 0.00146 - 0.00112 * r
            c0 = lux / per_count  # channel 0 at nominal 402 ms and 16x gain
            k = self.INTEG_MS[i] / 402 / (1 if timing & 0x10 else 16)
            ch0 = min(int(c0 * k + 0.5), self.CEILING[i])
            ch1 = min(int(c0 * r * k + 0.5), self.CEILING[i])
        self.regs[0x0C] = ch0 & 0xFF
        self.regs[0x0D] = ch0 >> 8
        self.regs[0x0E] = ch1 & 0xFF
        self.regs[0x0F] = ch1 >> 8


def _device(addr):
    spec = _vhw.state().get("i2c", {}).get(str(addr))
    if not spec:
        _chips.pop(addr, None)  # unplugged: a device put back starts powered down
        raise OSError(_ENODEV)
    chip = _chips.get(addr)
    if chip is None:
        chip = BME280(spec) if spec.get("model") == "bme280" else TSL2561(spec.get("id", 0x50))
        _chips[addr] = chip
    return chip


class I2C:
    """Software I2C (the esp8266 port's machine.I2C is SoftI2C). scl, sda: Pin objects."""

    def __init__(self, id=-1, *, scl=None, sda=None, freq=400000, timeout=255):
        self.scl = scl
        self.sda = sda
        self.freq = freq

    def init(self, *, scl=None, sda=None, freq=400000):
        self.freq = freq

    def scan(self):
        return sorted(int(a) for a, spec in _vhw.state().get("i2c", {}).items() if spec)

    def writeto(self, addr, buf, stop=True):
        _device(addr).write(buf)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        data = bytearray()
        for buf in vector:
            data.extend(buf)
        return self.writeto(addr, data, stop)

    def readfrom(self, addr, nbytes, stop=True):
        return bytes(_device(addr).read(nbytes))

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = _device(addr).read(len(buf))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        data = bytearray([memaddr])
        data.extend(buf)
        _device(addr).write(data)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        dev = _device(addr)
        dev.write(bytes([memaddr]))
        return bytes(dev.read(nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        dev = _device(addr)
        dev.write(bytes([memaddr]))
        buf[:] = dev.read(len(buf))


SoftI2C = I2C


class WDT:
    """The esp8266 port's WDT(id=0): no timeout argument. Creating it stops the SDK from feeding
    the soft watchdog, so the program must feed() it within about 3.2 s or the chip resets
    (reset_cause() WDT_RESET). The host watches the feeds (hw/wdt) and does the resetting."""

    def __init__(self, id=0):
        if id != 0:
            raise ValueError("invalid WDT id")
        _vhw.wdt_feed(True)

    def feed(self):
        _vhw.wdt_feed(False)


class RTC:
    """The RTC: calendar time (datetime(); the time model counts it) and its user memory, up to
    492 bytes that survive a reset (not a power cycle)."""

    def datetime(self, dt=None):
        """(year, month, day, weekday 0-6 Monday first, hour, minute, second, subseconds), UTC;
        with a tuple, set the clock (the weekday given is ignored, as the esp8266 port does)."""
        if dt is None:
            t = time.gmtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        time.set_rtc(time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0)))
        return None

    def memory(self, data=None):
        if data is None:
            try:
                with open(_vhw.path("rtc.bin"), "rb") as f:
                    return f.read()
            except OSError:
                return b""
        if len(data) > 492:
            raise ValueError("buffer too long")
        with open(_vhw.path("rtc.bin"), "wb") as f:
            f.write(data)
        return None


PWRON_RESET = 0
WDT_RESET = 1
SOFT_RESET = 4
DEEPSLEEP_RESET = 5
HARD_RESET = 6


def unique_id():
    """The ESP8266 chip id, 4 bytes."""
    return unhexlify(_vhw.state()["chip_id"])


def freq(hz=None):
    return 80000000 if hz is None else None


def reset_cause():
    """Why the chip last started: the host records it in state.json at every start."""
    return _vhw.state().get("reset_cause", PWRON_RESET)


def idle():
    pass


def reset():
    _vhw.event("reset")
    sys.exit(100)  # the host starts the board again, reset_cause() SOFT_RESET


def soft_reset():
    reset()


def disable_irq():
    return 0


def enable_irq(state=0):
    pass
