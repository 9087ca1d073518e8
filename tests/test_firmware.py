"""The Feather Huzzah firmware on virtual boards (real MicroPython VM) against a real Mosquitto.

Covers the topic contract, the last will, recovery, and the LED error codes, which are decoded
from the GPIO0 timeline the board's pin model records.
"""

import json
import re
import subprocess
import time

import pytest

from tests.conftest import BRIDGE_PASSWORD, Subscriber, device_config, free_port, wait_until
from virtual_huzzah.board import AccessPoint

pytestmark = pytest.mark.e2e

CHIP = 0xC0FF01
CLIENT_ID = "huzzah-01ffc000"  # "huzzah-" + hex of unique_id(): the chip id's 4 bytes, little-endian


def wait_code(board, code, timeout=20.0, since=0.0, repeats=2):
    """Wait until the red LED has blinked `code` `repeats` times in a row (complete groups)."""
    def seen():
        codes = board.blink_codes(since)
        return len(codes) >= repeats and codes[-repeats:] == [code] * repeats and codes
    return wait_until(seen, timeout, f"LED code {code}; console:\n{board.console_text()[-2000:]}", 0.2)


def test_publishes_the_topic_contract(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, lux=400.0)
    assert board.client_id == CLIENT_ID
    [(_, mac, retain, qos)] = subscriber.wait_for(f"connect/{CLIENT_ID}")
    assert (mac.decode(), retain, qos) == ("5c:cf:7f:c0:ff:01", False, 1)  # live delivery clears retain
    [(_, status, _, _)] = subscriber.wait_for(f"status/{CLIENT_ID}")
    assert status == b"online"
    [(_, scan, _, _)] = subscriber.wait_for(f"sensors/{CLIENT_ID}/i2c")
    assert json.loads(scan) == {"addresses": [0x39]}
    readings = subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=3)
    payloads = [json.loads(p) for _, p, _, _ in readings]
    for p in payloads:
        assert set(p) == {"lux", "broadband", "ir", "gain", "integration_ms", "seq"}
        assert p["lux"] == pytest.approx(400.0, rel=0.02)
        assert p["integration_ms"] == 402 and p["gain"] == 16
    assert [p["seq"] for p in payloads] == [1, 2, 3]


def test_late_subscriber_gets_the_retained_mac_and_status(broker, make_board):
    board = make_board(CHIP, broker.port, broker)
    board.wait_console("connected to", 15)
    out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "bridge",
                          "-P", BRIDGE_PASSWORD, "-t", f"connect/{CLIENT_ID}", "-t", f"status/{CLIENT_ID}",
                          "-v", "-C", "2", "-W", "10"], capture_output=True, text=True, timeout=15)
    assert sorted(out.stdout.splitlines()) == [f"connect/{CLIENT_ID} 5c:cf:7f:c0:ff:01", f"status/{CLIENT_ID} online"]


def test_status_goes_offline_when_the_board_dies(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker)
    subscriber.wait_for(f"status/{CLIENT_ID}")
    board.kill()  # power pulled: no DISCONNECT, so the broker sends the last will
    [_, (_, payload, _, _)] = subscriber.wait_for(f"status/{CLIENT_ID}", count=2)
    assert payload == b"offline"


def test_light_level_changes_and_saturation_reach_the_broker(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, lux=40.0)
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561")
    board.set_light(150000.0)  # direct sunlight saturates even 1x at 402 ms

    def saturated():
        return [json.loads(p) for _, p, _, _ in subscriber.on(f"sensors/{CLIENT_ID}/tsl2561")
                if json.loads(p)["lux"] is None]
    [reading, *_] = wait_until(saturated, 15, "a saturated reading")
    assert reading["gain"] == 1 and reading["broadband"] == 65535


def test_led_code_2_while_the_broker_is_unreachable(make_board):
    closed = free_port()
    board = make_board(CHIP, config=device_config(CLIENT_ID, closed))
    wait_code(board, 2, timeout=25)
    assert "ECONNREFUSED" in board.console_text() or "111" in board.console_text()


def test_led_code_2_with_a_wrong_broker_password(broker, make_board):
    broker.add_account(CLIENT_ID, "the-right-password")
    board = make_board(CHIP, config=device_config(CLIENT_ID, broker.port, password="a-wrong-password"))
    wait_code(board, 2, timeout=25)


def test_led_code_5_without_a_tsl2561_and_the_other_topics_still_publish(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, tsl2561_address=None)
    subscriber.wait_for(f"connect/{CLIENT_ID}")
    [(_, scan, _, _)] = subscriber.wait_for(f"sensors/{CLIENT_ID}/i2c")
    assert json.loads(scan) == {"addresses": []}
    wait_code(board, 5)
    assert subscriber.on(f"sensors/{CLIENT_ID}/tsl2561") == []
    # plugged in, the sensor is set up again and readings start; the LED goes dark
    board.set_tsl2561(0x39)
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", timeout=10)
    recovered = time.time()
    time.sleep(3)
    # a group already begun may finish (5 blinks, 2 s); none starts after that
    assert not [t for t, level in board.pin_timeline(0) if level == 0 and t > recovered + 2.1]


def test_led_code_1_with_a_wrong_wifi_password_then_recovers(broker, subscriber, make_board):
    board = make_board(CHIP, broker.port, broker, access_point=AccessPoint(password="changed-on-the-router"))
    wait_code(board, 1, timeout=40)
    assert "wifi" in board.console_text()
    board.set_access_point(AccessPoint())  # the router's password is put back
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", timeout=25)


def test_wifi_comes_up_in_sta_mode_with_the_ap_interface_off(broker, make_board):
    board = make_board(CHIP, broker.port, broker)
    board.wait_console("connected to", 15)
    wlan = [(kind, args) for _, kind, args in board.events() if kind == "wlan"]
    assert ("wlan", ["1", "active", "0"]) in wlan
    assert ("wlan", ["0", "active", "1"]) in wlan
    assert ("wlan", ["0", "connect", AccessPoint().ssid]) in wlan


def test_led_code_6_without_config_then_recovers_when_one_is_written(broker, subscriber, make_board):
    board = make_board(CHIP, config=None)
    wait_code(board, 6, timeout=30)
    assert "config.json missing" in board.console_text()
    broker.add_account(CLIENT_ID, "pw")
    (board.fs / "config.json").write_text(json.dumps(device_config(CLIENT_ID, broker.port, password="pw")))
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", timeout=25)


def test_led_code_6_for_an_invalid_config_names_the_key(make_board):
    cases = [("{not json", "not valid JSON"),
             (json.dumps({"wifi_ssid": "x"}), "key wifi_password"),
             (json.dumps(dict(device_config(CLIENT_ID, 1883), mqtt_port="1883")), "key mqtt_port")]
    boards = [make_board(CHIP + i, config=text) for i, (text, _) in enumerate(cases)]  # side by side
    for board, (_, message) in zip(boards, cases):
        wait_code(board, 6, timeout=30)
        assert message in board.console_text()
        assert board.running  # no crash, no reset loop


def test_led_code_3_when_umqtt_is_missing(make_board, broker):
    board = make_board(CHIP, broker.port, broker, umqtt=False)
    wait_code(board, 3, timeout=25)
    assert "umqtt" in board.console_text()


def test_readings_taken_while_the_broker_is_down_arrive_after_it_returns(broker, make_board):
    # a persistent session (QoS 1, clean_session false) that survives the broker's restart
    sub = Subscriber(broker.port, topics=(f"sensors/{CLIENT_ID}/tsl2561",), client_id="test-persistent",
                     clean_session=False)
    try:
        board = make_board(CHIP, broker.port, broker)
        sub.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=2)
        broker.stop()
        wait_code(board, 2, timeout=30)
        broker.start()  # same port, same persistence database
        board.wait_console("published sensors", 40, start=len(board.console))
        wait_until(lambda: len(sub.messages) >= 8, 20, "the readings queued on the board")
        seqs = [json.loads(p)["seq"] for _, p, _, _ in sub.messages]
        # every reading, including those taken while the broker was away, arrives once and in order
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        sub.close()


def test_firmware_imports_only_modules_of_the_esp8266_port():
    from virtual_huzzah import board as paths
    esp8266 = {"gc", "json", "time", "binascii", "machine", "micropython", "network", "asyncio", "uasyncio",
               "umqtt.simple", "os", "sys", "struct", "socket", "errno", "select", "io", "collections"}
    own = {p.stem for p in paths.FIRMWARE_DIR.glob("*.py")}
    for path in paths.FIRMWARE_DIR.glob("*.py"):
        for name in re.findall(r"^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", path.read_text(), re.M):
            module = name[0] or name[1]
            assert module in esp8266 | own, f"{path.name} imports {module}"
