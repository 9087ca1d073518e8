# BME280 humidity, pressure and temperature sensor over I2C (Bosch Sensortec).
#
# Source: Bosch BME280 datasheet BST-BME280-DS002, section 4.2.3 (the compensation formulas in
# their integer form: temperature in 32-bit integers, pressure in 64-bit, humidity in 32-bit),
# section 5.4 (registers) and 9.1 (measurement time). The integer formulas are used, not the
# double ones: the esp8266 port's floats are single precision, too coarse for the pressure
# formula; MicroPython's ints are exact at any size. Forced mode, oversampling x1 for all three.
# Sensors return readings; they never touch MQTT (app.py publishes).
import time

from micropython import const

ADDRESSES = (0x76, 0x77)  # SDO to GND, SDO to VDDIO
_REG_CALIB_TP = const(0x88)  # dig_T1..dig_P9: 24 bytes, little-endian; 0xA1 dig_H1
_REG_CALIB_H1 = const(0xA1)
_REG_ID = const(0xD0)
_CHIP_ID = const(0x60)
_REG_CALIB_H = const(0xE1)  # dig_H2..dig_H6: 7 bytes
_REG_CTRL_HUM = const(0xF2)
_REG_CTRL_MEAS = const(0xF4)
_REG_DATA = const(0xF7)  # press_msb..hum_lsb: 8 bytes
_OSRS_X1 = const(1)
_FORCED = const(0x25)  # ctrl_meas: osrs_t x1 (bits 7:5), osrs_p x1 (bits 4:2), forced mode (01)
_MEASURE_MS = const(10)  # 9.3 ms at most with x1 oversampling (datasheet 9.1), and a margin


def _s16(b, i):
    v = b[i] | b[i + 1] << 8
    return v - 65536 if v > 32767 else v


def _s8(v):
    return v - 256 if v > 127 else v


def _div(a, b):
    # C's integer division (truncates toward zero); Python's // floors
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def compensate(cal, adc_t, adc_p, adc_h):
    """The datasheet's integer compensation (4.2.3) of raw ADC values.

    cal: the 18 calibration words (T1, T2, T3, P1..P9, H1..H6; ints); adc_t, adc_p: 20-bit ints;
    adc_h: 16-bit int. Returns (temperature in 0.01 degC, pressure in Pa x 256 (Q24.8), relative
    humidity in % x 1024 (Q22.10)), ints; pressure 0 when dig_P1 is 0 (no division by zero).
    """
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6 = cal
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    temperature = (t_fine * 5 + 128) >> 8
    # pressure, BME280_compensate_P_int64
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        pressure = 0
    else:
        p = _div((((1048576 - adc_p) << 31) - var2) * 3125, var1)
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        pressure = ((p + var1 + var2) >> 8) + (p7 << 4)
    # humidity, bme280_compensate_H_int32
    v = t_fine - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
    v = min(max(v, 0), 419430400)
    return temperature, pressure, v >> 12


class BME280:
    """One BME280 on an I2C bus (machine.I2C / SoftI2C), address 0x76 or 0x77.

    Use: setup(); then repeatedly wait wait_ms() milliseconds and call update(). I2C errors (no
    device: errno ENODEV) raise OSError; a device at the address that is not a BME280 (chip id
    0x60; a BMP280 is 0x58) raises OSError too.
    """

    def __init__(self, i2c, address=0x76):
        self.i2c = i2c
        self.address = address
        self.cal = None
        self._buf = bytearray(24)  # calibration, then each reading's 8 data bytes, reused
        self._ready = None  # ticks_ms when the forced measurement started is complete

    def setup(self):
        """Check the chip id, read the calibration words (datasheet 5.4, table 16)."""
        i2c, a, b = self.i2c, self.address, self._buf
        if i2c.readfrom_mem(a, _REG_ID, 1)[0] != _CHIP_ID:
            raise OSError(f"0x{a:02x}: not a BME280")
        i2c.readfrom_mem_into(a, _REG_CALIB_TP, b)
        cal = [b[0] | b[1] << 8, _s16(b, 2), _s16(b, 4), b[6] | b[7] << 8]
        cal.extend(_s16(b, i) for i in range(8, 24, 2))
        cal.append(i2c.readfrom_mem(a, _REG_CALIB_H1, 1)[0])
        h = i2c.readfrom_mem(a, _REG_CALIB_H, 7)
        cal.extend((_s16(h, 0), h[2], _s8(h[3]) << 4 | h[4] & 0x0F, _s8(h[5]) << 4 | h[4] >> 4, _s8(h[6])))
        self.cal = tuple(cal)
        i2c.writeto_mem(a, _REG_CTRL_HUM, bytes((_OSRS_X1,)))  # takes effect with the ctrl_meas write
        self._ready = None

    def wait_ms(self):
        """Milliseconds (int, >= 0) until the measurement started is complete (0: none started)."""
        return 0 if self._ready is None else max(0, time.ticks_diff(self._ready, time.ticks_ms()))

    def update(self):
        """One reading: dict {"temperature_c", "humidity_pct", "pressure_hpa"} (floats), or None
        when it has just started a forced measurement: wait wait_ms(), then call update() again.
        Raises OSError on I2C errors."""
        i2c, a = self.i2c, self.address
        if self._ready is None:
            i2c.writeto_mem(a, _REG_CTRL_MEAS, bytes((_FORCED,)))
            self._ready = time.ticks_add(time.ticks_ms(), _MEASURE_MS)
            return None
        self._ready = None
        b = memoryview(self._buf)[:8]
        i2c.readfrom_mem_into(a, _REG_DATA, b)
        t, p, h = compensate(self.cal, b[3] << 12 | b[4] << 4 | b[5] >> 4, b[0] << 12 | b[1] << 4 | b[2] >> 4,
                             b[6] << 8 | b[7])
        return {"temperature_c": round(t / 100, 2), "humidity_pct": round(h / 1024, 2),
                "pressure_hpa": round(p / 25600, 2)}


def make(i2c, address, cfg, keep):
    """The driver registry's constructor (app.py): a BME280 at `address` (0x76 or 0x77). It keeps
    nothing between readings (setup() reads the calibration each time: 33 bytes)."""
    return BME280(i2c, address)
