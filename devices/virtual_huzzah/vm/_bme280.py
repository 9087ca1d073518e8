# Virtual Feather Huzzah: model of a Bosch BME280 (datasheet BST-BME280-DS002) on the I2C bus.
#
# Runs inside the MicroPython VM (machine.I2C hands it the bus transfers). Registers per the
# datasheet's memory map (5.3): chip id 0xD0 = 0x60, reset 0xE0 (0xB6), the calibration words
# at 0x88-0xA1 and 0xE1-0xE7, ctrl_hum 0xF2 (latched by a ctrl_meas write), status 0xF3, ctrl_meas
# 0xF4, config 0xF5, data 0xF7-0xFE (pressure and temperature 20 bits, humidity 16). A forced-mode
# write of ctrl_meas takes a measurement: the data registers get the raw ADC values that the
# datasheet's *double* compensation formulas (section 8.1) turn into the world's temperature,
# humidity and pressure (found by bisection), so the firmware's integer formulas are checked
# against an independent form of the datasheet. Until the first measurement the data registers
# hold the reset values (0x80000 / 0x8000: "skipped").
import _vhw

# Calibration: the T and P words of Bosch's worked example (BMP280 datasheet 3.12, the same
# formulas), the H words of a BME280 in the field.
CAL = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
       75, 362, 0, 313, 50, 30)


def _calib_bytes(cal):
    regs = bytearray(0x100)
    i = 0x88
    for w in cal[:12]:
        w &= 0xFFFF
        regs[i] = w & 0xFF
        regs[i + 1] = w >> 8
        i += 2
    h1, h2, h3, h4, h5, h6 = cal[12:]
    regs[0xA1] = h1
    regs[0xE1] = h2 & 0xFF
    regs[0xE2] = (h2 & 0xFFFF) >> 8
    regs[0xE3] = h3
    regs[0xE4] = (h4 >> 4) & 0xFF
    regs[0xE5] = (h4 & 0x0F) | (h5 & 0x0F) << 4
    regs[0xE6] = (h5 >> 4) & 0xFF
    regs[0xE7] = h6 & 0xFF
    return regs


def t_fine(adc_t, cal=CAL):
    t1, t2, t3 = cal[:3]
    v1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    v2 = (adc_t / 131072.0 - t1 / 8192.0) ** 2 * t3
    return v1 + v2


def pressure_pa(adc_p, tf, cal=CAL):
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal[3:12]
    v1 = tf / 2.0 - 64000.0
    v2 = v1 * v1 * p6 / 32768.0 + v1 * p5 * 2.0
    v2 = v2 / 4.0 + p4 * 65536.0
    v1 = (p3 * v1 * v1 / 524288.0 + p2 * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * p1
    if v1 == 0:
        return 0.0
    p = 1048576.0 - adc_p
    p = (p - v2 / 4096.0) * 6250.0 / v1
    return p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0


def humidity_pct(adc_h, tf, cal=CAL):
    h1, h2, h3, h4, h5, h6 = cal[12:]
    v = tf - 76800.0
    v = (adc_h - (h4 * 64.0 + h5 / 16384.0 * v)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * v * (1.0 + h3 / 67108864.0 * v)))
    v = v * (1.0 - h1 * v / 524288.0)
    return min(max(v, 0.0), 100.0)


def _invert(f, target, top, rising=True):
    # the raw value in [0, top] whose compensated value is nearest `target` (f monotonic)
    lo, hi = 0, top
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (f(mid) < target) == rising:
            lo = mid
        else:
            hi = mid
    return lo if abs(f(lo) - target) <= abs(f(hi) - target) else hi


class BME280:
    def __init__(self, spec):
        self.regs = _calib_bytes(CAL)
        self.ptr = 0
        self._reset()

    def _reset(self):
        r = self.regs
        r[0xD0] = 0x60
        for i in range(0xF2, 0xFF):
            r[i] = 0
        r[0xF7], r[0xFA], r[0xFD] = 0x80, 0x80, 0x80  # "skipped" until measured
        self.hum_osrs = 0

    def write(self, buf):
        if not len(buf):
            return
        self.ptr = buf[0]
        for b in buf[1:]:  # writes come as (register, value) pairs; the address is not incremented
            self._set(self.ptr, b)

    def _set(self, reg, v):
        if reg == 0xE0 and v == 0xB6:
            self._reset()
        elif reg == 0xF2:
            self.regs[0xF2] = v & 0x07
        elif reg == 0xF4:
            self.regs[0xF4] = v
            self.hum_osrs = self.regs[0xF2]
            if v & 0x03 in (1, 2):  # forced mode: one measurement, then back to sleep
                self._measure(v)
                self.regs[0xF4] = v & 0xFC
        elif reg == 0xF5:
            self.regs[0xF5] = v

    def _measure(self, ctrl):
        st = _vhw.state().get("i2c", {})
        spec = {}
        for s in st.values():
            if s and s.get("model") == "bme280":
                spec = s
        t = float(spec.get("temperature_c", 20.0))
        adc_t = _invert(lambda a: t_fine(a) / 5120.0, t, 0xFFFFF)
        tf = t_fine(adc_t)
        r = self.regs
        if ctrl >> 5:
            r[0xFA], r[0xFB], r[0xFC] = adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4
        if (ctrl >> 2) & 0x07:
            p = float(spec.get("pressure_hpa", 1013.25)) * 100
            adc_p = _invert(lambda a: pressure_pa(a, tf), p, 0xFFFFF, False)
            r[0xF7], r[0xF8], r[0xF9] = adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4
        if self.hum_osrs:
            adc_h = _invert(lambda a: humidity_pct(a, tf), float(spec.get("humidity_pct", 50.0)), 0xFFFF)
            r[0xFD], r[0xFE] = adc_h >> 8, adc_h & 0xFF

    def read(self, n):
        out = bytearray(n)
        for i in range(n):  # reads auto-increment
            out[i] = self.regs[self.ptr & 0xFF]
            self.ptr += 1
        return out
