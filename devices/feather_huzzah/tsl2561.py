# TSL2561 light-to-digital converter over I2C.
#
# Source: TAOS/ams TSL2560/TSL2561 datasheet TAOS059 (register set; "Calculating Lux", floating
# point form), cross-checked with Adafruit's drivers for the saturation ceilings and the
# automatic gain windows. Sensors return readings; they never touch MQTT (app.py publishes).
import time

from micropython import const

_CMD = const(0x80)  # command byte: bit 7 set; bits 3:0 the register address
_REG_CONTROL = const(0x00)
_REG_TIMING = const(0x01)
_REG_ID = const(0x0A)
_REG_DATA0 = const(0x0C)  # DATA0LOW, DATA0HIGH, DATA1LOW, DATA1HIGH: auto-increment
_POWER_UP = const(0x03)
_GAIN_16X = const(0x10)  # TIMING bit 4

INTEGRATION_MS = (13.7, 101, 402)  # TIMING bits 1:0 = index
_CEILING = (5047, 37177, 65535)  # counts at which a channel is saturated
_CLIPPED = (4900, 37000, 65000)  # treat as saturated from here (datasheet ceiling less a margin)
# Automatic gain and integration time, a ladder from most to least sensitive: 16x at the
# configured integration time, 1x at it, then 1x at each shorter one (402 -> 101 -> 13.7 ms).
# Channel 0 over _AUTO_HIGH[integration] steps down the ladder; a step up is taken when the
# reading there would stay under half of its _AUTO_HIGH (hysteresis). Note the datasheet's ceilings
# scale with the integration time (65535 is the 16-bit limit; 37177 and 5047 are the counts
# the ADC can reach in 101 and 13.7 ms): 101 ms at 1x reaches about 2.3x the lux of 402 ms at
# 1x, direct sunlight (~40,000 lux); 13.7 ms at 1x keeps a reading just short of 101 ms's ceiling.
_AUTO_HIGH = (4850, 35000, 63000)
_AUTO_LOW_1X = (100, 200, 500)  # at the configured integration time, 1x under this: 16x
_MARGIN_MS = const(20)  # waited past the integration time before reading
# Lux coefficients per package, from the datasheet's tables. First row: R <= limit gives
# a*C0 - b*C0*R^1.4; then rows (limit, a, b): R <= limit gives a*C0 - b*C1; beyond: 0.
_LUX_T = ((0.50, 0.0304, 0.062), ((0.61, 0.0224, 0.031), (0.80, 0.0128, 0.0153), (1.30, 0.00146, 0.00112)))
_LUX_CS = ((0.52, 0.0315, 0.0593), ((0.65, 0.0229, 0.0291), (0.80, 0.0157, 0.0180), (1.30, 0.00338, 0.00260)))


def lux(broadband, ir, gain, integration_ms, package="T"):
    """Illuminance from raw channel counts, per the datasheet's floating point formulas.

    broadband: channel 0 counts (int, visible + IR); ir: channel 1 counts (int, IR only);
    gain: 1 or 16; integration_ms: 13.7, 101 or 402; package: "T" (T, FN, CL) or "CS".
    Returns lux (float, >= 0), or None when either channel is saturated (clipped), since a
    saturated reading has no meaningful lux. Raises ValueError for an unknown integration time.
    """
    i = INTEGRATION_MS.index(integration_ms)
    if broadband >= _CLIPPED[i] or ir >= _CLIPPED[i]:
        return None
    scale = 402 / integration_ms  # to nominal 402 ms
    if gain == 1:
        scale *= 16  # to nominal 16x
    c0 = broadband * scale
    c1 = ir * scale
    if c0 == 0:
        return 0.0
    r = c1 / c0
    first, rows = _LUX_CS if package == "CS" else _LUX_T
    if r <= first[0]:
        v = first[1] * c0 - first[2] * c0 * r ** 1.4
    else:
        v = 0.0  # R > 1.30
        for limit, a, b in rows:
            if r <= limit:
                v = a * c0 - b * c1
                break
    return v if v > 0 else 0.0


class TSL2561:
    """One TSL2561 on an I2C bus (machine.I2C / SoftI2C).

    address: 0x29, 0x39 (default, ADDR floating) or 0x49. gain: "auto", 1 or 16.
    integration_ms: 13.7, 101 or 402. I2C errors (no device: errno ENODEV) raise OSError;
    a device at the address that is not a TSL2561 raises OSError too.

    Use: setup(); then repeatedly wait wait_ms() milliseconds and call update().
    """

    def __init__(self, i2c, address=0x39, gain="auto", integration_ms=402, package="T"):
        self.i2c = i2c
        self.address = address
        self.auto = gain == "auto"
        self.gain = 16 if self.auto else gain
        self.integ = self.longest = INTEGRATION_MS.index(integration_ms)
        self.package = package
        self._buf = bytearray(4)  # one read of both channels, reused
        self._one = bytearray(1)
        self._ready = 0
        self.keep = None  # make(): a list kept between instances, [gain, integration index]

    def _write(self, reg, value):
        self._one[0] = value
        self.i2c.writeto_mem(self.address, _CMD | reg, self._one)

    def _timing(self):
        self._write(_REG_TIMING, (_GAIN_16X if self.gain == 16 else 0) | self.integ)
        # the channels hold no valid data until one whole integration has completed
        self._ready = time.ticks_add(time.ticks_ms(), int(INTEGRATION_MS[self.integ]) + 1 + _MARGIN_MS)

    def setup(self):
        """Check the part ID, power the sensor up and set gain and integration time.

        Raises OSError when nothing answers at the address or the ID is not a TSL2561's
        (high nibble 0x1 per the datasheet, 0x5 on parts in the field).
        """
        self.i2c.readfrom_mem_into(self.address, _CMD | _REG_ID, self._one)
        if self._one[0] >> 4 not in (0x1, 0x5):
            raise OSError(f"0x{self.address:02x}: ID 0x{self._one[0]:02x} is not a TSL2561")
        self._write(_REG_CONTROL, _POWER_UP)
        self._timing()

    def wait_ms(self):
        """Milliseconds (int, >= 0) until the current integration is complete."""
        return max(0, time.ticks_diff(self._ready, time.ticks_ms()))

    def read_raw(self):
        """(broadband, ir) counts (ints) from channels 0 and 1. Raises OSError on I2C errors."""
        self.i2c.readfrom_mem_into(self.address, _CMD | _REG_DATA0, self._buf)
        b = self._buf
        return b[0] | b[1] << 8, b[2] | b[3] << 8

    def _step(self, ch0):
        # one step of the automatic ladder; True when gain or integration time changed
        i = self.integ
        if ch0 > _AUTO_HIGH[i]:
            if self.gain == 16:
                self.gain = 1
            elif i:
                self.integ = i - 1
            else:
                return False  # saturated at the least sensitive setting
            return True
        if self.gain == 1:
            if i < self.longest:
                if ch0 * INTEGRATION_MS[i + 1] / INTEGRATION_MS[i] < _AUTO_HIGH[i + 1] // 2:
                    self.integ = i + 1
                    return True
            elif ch0 < _AUTO_LOW_1X[i]:
                self.gain = 16
                return True
        return False

    def update(self):
        """One reading: dict {"lux", "broadband", "ir", "gain", "integration_ms"}.

        lux is a float or None (saturated even at 1x and 13.7 ms); counts are ints. With gain
        "auto", returns None instead when the gain or the integration time had to change (one
        step of the ladder above): wait wait_ms() again, then call update() again (at most 3
        steps from the configured integration time at 16x to 13.7 ms at 1x).
        Raises OSError on I2C errors.
        """
        broadband, ir = self.read_raw()
        if self.auto and self._step(broadband):
            self._timing()
            if self.keep is not None:
                self.keep[:] = (self.gain, self.integ)
            return None
        ms = INTEGRATION_MS[self.integ]
        value = lux(broadband, ir, self.gain, ms, self.package)
        return {
            "lux": None if value is None else round(value, 2),
            "broadband": broadband,
            "ir": ir,
            "gain": self.gain,
            "integration_ms": ms,
        }


def make(i2c, address, cfg, keep):
    """The driver registry's constructor (app.py): a TSL2561 at `address` per config.json. `keep`
    (list, empty at first) carries the automatic gain's place on its ladder from one instance to
    the next, so app.py can drop this module between readings."""
    s = TSL2561(i2c, address, cfg["tsl2561_gain"], cfg["tsl2561_integration_ms"], cfg["tsl2561_package"])
    if keep and s.auto:
        s.gain, s.integ = keep
    s.keep = keep
    return s
