"""The firmware's BME280 driver, run on the MicroPython VM.

compensate() is checked against values worked by hand from the Bosch datasheet's formulas
(BME280 datasheet BST-BME280-DS002, 4.2.3 and 8.1; the T and P words and raw values are Bosch's
worked example in the BMP280 datasheet, 3.12, whose formulas the BME280 shares). The driver is run
against the virtual board's BME280 model, which turns the weather into raw values with the
datasheet's *double* formulas; and on a whole board, with a TSL2561 beside it.
"""

import json

import pytest

from tests.helpers import run_micropython, wait_until
from virtual_huzzah.board import client_id_for

# dig_T1..T3, dig_P1..P9, dig_H1..H6
CAL = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000, 75, 362, 0, 313, 50, 30)


def test_compensation_matches_the_datasheet_worked_by_hand():
    # Temperature, adc_T = 519888 (integer form, 4.2.3): var1 = ((519888 >> 3) - (27504 << 1)) * 26435 >> 11
    # = (64986 - 55008) * 26435 >> 11 = 263768430 >> 11 = 128793; var2 = (((519888 >> 4) - 27504)^2 >> 12)
    # * -1000 >> 14 = (4989^2 = 24890121 >> 12 = 6076) * -1000 >> 14 = -371; t_fine = 128422 (Bosch's
    # table: 128422); T = (128422 * 5 + 128) >> 8 = 642238 >> 8 = 2508: 25.08 degC (Bosch: 25.08).
    # Pressure, adc_P = 415148: Bosch's table: 100653.27 Pa (double form), 100653 Pa (integer forms).
    # Humidity, adc_H = 30000 (double form, 4.2.3): var_H = t_fine - 76800 = 51622;
    # adc_H - (H4 * 64 + H5 / 16384 * var_H) = 30000 - (20032 + 157.538) = 9810.462;
    # H2 / 65536 * (1 + H6 / 67108864 * var_H * (1 + H3 / 67108864 * var_H)) = 0.00552368 * 1.0230767
    # = 0.00565115; var_H = 9810.462 * 0.00565115 = 55.4404; var_H * (1 - H1 * var_H / 524288)
    # = 55.4404 * 0.9920692 = 55.0007 %.
    out = run_micropython(f"import bme280\nprint(bme280.compensate({CAL!r}, 519888, 415148, 30000))")
    t, p, h = (int(v) for v in out.strip("()\n").split(","))
    assert t == 2508
    assert p / 256 == pytest.approx(100653.27, abs=1.0)
    assert h / 1024 == pytest.approx(55.0007, abs=0.01)


DRIVER = """
import json, time, bme280
from machine import I2C, Pin
s = bme280.BME280(I2C(scl=Pin(5), sda=Pin(4)), {address})
s.setup()
out = []
for _ in range(4):
    time.sleep_ms(s.wait_ms())
    r = s.update()
    if r:
        out.append(r)
print(json.dumps(out))
"""


def hw(address, **weather):
    return {"chip_id": "01ffc000", "mac": "5ccf7fc0ff01", "ap": None,
            "i2c": {str(address): dict({"model": "bme280"}, **weather)}}


@pytest.mark.parametrize(("address", "t", "h", "p"), [(0x76, 21.5, 45.0, 1013.25), (0x77, -12.3, 88.0, 962.4),
                                                     (0x76, 38.0, 10.0, 1040.0)])
def test_driver_reads_the_weather_through_the_i2c_model(tmp_path, address, t, h, p):
    code = DRIVER.format(address=address)
    readings = json.loads(run_micropython(code, hw(address, temperature_c=t, humidity_pct=h, pressure_hpa=p),
                                          tmp_path))
    assert len(readings) == 2  # each update() that starts a forced measurement returns None
    for r in readings:
        assert r["temperature_c"] == pytest.approx(t, abs=0.02)
        assert r["humidity_pct"] == pytest.approx(h, abs=0.1)
        assert r["pressure_hpa"] == pytest.approx(p, abs=0.02)


def test_a_tsl2561_at_a_bme280_address_is_refused(tmp_path):
    code = ("import bme280\nfrom machine import I2C, Pin\ns = bme280.BME280(I2C(scl=Pin(5), sda=Pin(4)), 0x76)\n"
            "try:\n    s.setup()\nexcept OSError as e:\n    print(e)\n")
    state = hw(0x76)
    state["i2c"]["118"] = {"model": "tsl2561", "id": 0x50}
    assert "not a BME280" in run_micropython(code, state, tmp_path)


def test_board_publishes_both_sensors_and_a_bme280_unplugged_gives_code_5_while_the_tsl2561_goes_on(
        broker, subscriber, make_board):
    board = make_board(0xC0FF05, broker.port, broker, start=False)
    board.set_bme280(0x77, temperature_c=19.0, humidity_pct=52.0, pressure_hpa=1001.5)
    board.start()
    cid = client_id_for(0xC0FF05)
    [(_, scan, _, _)] = subscriber.wait_for(f"sensors/{cid}/i2c")
    assert json.loads(scan) == {"addresses": [0x39, 0x77]}
    [(_, payload, retained, qos)] = subscriber.wait_for(f"sensors/{cid}/bme280")
    reading = json.loads(payload)
    assert (retained, qos) == (False, 1)
    assert reading["temperature_c"] == pytest.approx(19.0, abs=0.02)
    assert reading["humidity_pct"] == pytest.approx(52.0, abs=0.1)
    assert reading["pressure_hpa"] == pytest.approx(1001.5, abs=0.02)
    assert isinstance(reading["seq"], int)
    subscriber.wait_for(f"sensors/{cid}/tsl2561")
    # unplugged mid-run: code 5 for it, the TSL2561's readings go on
    board.set_bme280(None)
    board.wait_console("bme280: OSError", 10)
    unplugged = board.console_text().count("bme280")
    wait_until(lambda: 5 in board.blink_codes(), 15, "LED code 5")
    bme = len(subscriber.on(f"sensors/{cid}/bme280"))
    tsl = len(subscriber.on(f"sensors/{cid}/tsl2561"))
    subscriber.wait_for(f"sensors/{cid}/tsl2561", count=tsl + 2)
    assert len(subscriber.on(f"sensors/{cid}/bme280")) == bme
    assert board.running
    assert unplugged
    # plugged back in, its readings come back
    board.set_bme280(0x77, temperature_c=23.0)
    [*_, (_, payload, _, _)] = subscriber.wait_for(f"sensors/{cid}/bme280", count=bme + 1, timeout=10)
    assert json.loads(payload)["temperature_c"] == pytest.approx(23.0, abs=0.02)


