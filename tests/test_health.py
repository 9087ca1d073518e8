"""Health on sensors/<client_id>/system: on connect and every health_every readings, with the
fields of the agreed contract, from the firmware on a virtual board against the real broker."""

import json

from tests.helpers import wait_until
from virtual_huzzah.board import AccessPoint, client_id_for

CHIP = 0xC0FF21
CLIENT_ID = client_id_for(CHIP)
SYSTEM = f"sensors/{CLIENT_ID}/system"
FIELDS = {"uptime_s": int, "heap_free": int, "rssi_dbm": int, "reset_cause": str, "version": str, "dropped": int,
          "wifi_reconnects": int, "mqtt_reconnects": int, "fault": int}


def health(payload: bytes) -> dict:
    h = json.loads(payload)
    assert set(FIELDS) <= set(h), h
    assert set(h) - set(FIELDS) <= {"ts"}, h
    for key, kind in FIELDS.items():
        assert type(h[key]) is kind, (key, h)
    return h


def test_health_on_connect_and_every_n_readings(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, start=False, access_point=AccessPoint(rssi_dbm=-71))
    board.config["health_every"] = 3
    board.start()
    [(_, payload, retained, qos)] = subscriber.wait_for(SYSTEM)
    first = health(payload)
    assert (retained, qos) == (False, 1)
    assert first["reset_cause"] == "power_on"
    assert first["rssi_dbm"] == -71
    assert first["fault"] == 0
    assert (first["dropped"], first["wifi_reconnects"], first["mqtt_reconnects"]) == (0, 0, 0)
    assert 4096 < first["heap_free"] < 38 * 1024
    assert first["version"]
    # then every 3 readings (publish_interval_s 1): readings and health in between
    subscriber.wait_for(SYSTEM, count=3, timeout=20)
    readings = subscriber.on(f"sensors/{CLIENT_ID}/tsl2561")
    assert len(readings) >= 5
    last = health(subscriber.on(SYSTEM)[-1][1])
    assert last["uptime_s"] >= 3


def test_health_counts_reconnects_and_shows_the_fault(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, tsl2561_address=None)
    subscriber.wait_for(SYSTEM)
    board.set_access_point(None)  # out of range: Wi-Fi and the broker connection drop
    wait_until(lambda: "not connected" in board.console_text(), 20, "Wi-Fi down")
    seen = len(subscriber.on(SYSTEM))
    board.set_access_point(AccessPoint())
    subscriber.wait_for(SYSTEM, count=seen + 1, timeout=30)
    h = health(subscriber.on(SYSTEM)[seen][1])
    assert h["wifi_reconnects"] == 1
    assert h["mqtt_reconnects"] >= 1  # a connect may also have slipped in as the access point went
    assert h["fault"] == 5  # no sensor on the bus
