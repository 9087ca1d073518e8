"""The Feather Huzzah firmware on virtual boards (real MicroPython VM) against a real Mosquitto.

Covers the topic contract, the last will, recovery, and the LED error codes, which are decoded
from the GPIO0 timeline the board's pin model records.
"""

import json
import re
import subprocess
import time

import pytest

from tests.helpers import (
    BRIDGE_PASSWORD,
    Subscriber,
    codes_from_dark,
    device_config,
    free_port,
    led_dark_for,
    wait_code,
    wait_until,
)
from virtual_huzzah.board import FIRMWARE_DIR, AccessPoint

pytestmark = pytest.mark.e2e

CHIP = 0xC0FF01
CLIENT_ID = "huzzah-01ffc000"  # "huzzah-" + hex of unique_id(): the chip id's 4 bytes, little-endian


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
        assert p["integration_ms"] == 402
        assert p["gain"] == 16
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
    board.set_light(40000.0)  # direct sunlight: automatic gain goes on to 1x at 101 ms and reads it

    def sunlit():
        return [json.loads(p) for _, p, _, _ in subscriber.on(f"sensors/{CLIENT_ID}/tsl2561")
                if json.loads(p)["lux"] and json.loads(p)["lux"] > 30000]
    [reading, *_] = wait_until(sunlit, 15, "a reading in direct sunlight")
    assert (reading["gain"], reading["integration_ms"]) == (1, 101)
    assert reading["lux"] == pytest.approx(40000, rel=0.02)
    board.set_light(150000.0)  # beyond direct sunlight saturates even 1x at 13.7 ms

    def saturated():
        return [json.loads(p) for _, p, _, _ in subscriber.on(f"sensors/{CLIENT_ID}/tsl2561")
                if json.loads(p)["lux"] is None]
    [reading, *_] = wait_until(saturated, 15, "a saturated reading")
    assert (reading["gain"], reading["integration_ms"]) == (1, 13.7)
    assert reading["broadband"] == 5047  # the datasheet's ceiling at 13.7 ms


def test_led_code_2_while_the_broker_is_unreachable(make_board):
    closed = free_port()
    board = make_board(CHIP, config=device_config(CLIENT_ID, closed))
    wait_code(board, 2, timeout=25)
    # what the board's console prints for the refused connection: umqtt's socket connect raises
    # OSError(ECONNREFUSED), errno 111 on Linux, which MicroPython shows as OSError(111,)
    assert f"app: broker 127.0.0.1:{closed}: OSError(111,), retry in 1000 ms" in board.console


def test_led_code_2_with_a_wrong_broker_password(broker, make_board):
    broker.add_account(CLIENT_ID, "the-right-password")
    board = make_board(CHIP, config=device_config(CLIENT_ID, broker.port, password="a-wrong-password"))
    wait_code(board, 2, timeout=25)
    # CONNACK return code 5, not authorized: Mosquitto 2.0's answer to a wrong password
    assert f"app: broker 127.0.0.1:{broker.port}: MQTTException(5,), retry in 1000 ms" in board.console


def code_4_and_next(board, since):
    """codes_from_dark() once it holds a first code other than 4, or 4 and the code after it; else None."""
    codes = codes_from_dark(board, since)
    return codes if codes and (codes[0] != 4 or len(codes) >= 2) else None


def test_led_code_4_when_the_link_drops_mid_session_then_code_1(broker, subscriber, make_board):
    """Code 4 is set when the publishing loop (app._serve) raises, and cleared by the next connect.

    When the broker closes the session, the board tries to reconnect at once: refused, it sets
    code 2, which wins, being lower; accepted, it clears code 4. Either way the LED's task, which
    looks at the codes at the start of each group, finds no code 4 (test_readings_taken_while_
    the_broker_is_down_... sees the failed publish on the console, then code 2). When the access
    point goes away mid-session, _serve raises OSError('wifi down'), code 4 is set, and mqtt_task
    waits (500 ms) for Wi-Fi: the LED's task, looking every 200 ms while dark, shows a group of 4
    unless wifi_task (every 500 ms) has set code 1 before it looked; code 1 shows from the next
    group on. Who looks first depends on where in wifi_task's 500 ms the link drops: each try
    drops it at another delay after a reading arrives; the LED wins most of them (4 in 5 here).
    """
    topic = f"sensors/{CLIENT_ID}/tsl2561"
    board = make_board(CHIP, broker.port, broker)
    subscriber.wait_for(topic)
    for delay_ms in (0, 250, 120, 370, 60, 310, 180, 430):
        wait_until(lambda: led_dark_for(board, 2.2), 15, "the LED dark for 2.2 s", 0.1)
        subscriber.wait_for(topic, count=len(subscriber.on(topic)) + 1)  # the board has just published
        time.sleep(delay_ms / 1000)  # where in the board's cycle the link drops: what each try varies
        since, start = time.time(), len(board.console)
        board.set_access_point(None)
        board.wait_console("app: publish failed: OSError('wifi down',)", 5, start=start)
        codes = wait_until(lambda since=since: code_4_and_next(board, since), 12,
                           f"LED codes after the access point went away; console:\n{board.console_text()[-2000:]}",
                           0.1)
        if codes[0] == 4:
            assert codes[1:] == [1] * (len(codes) - 1)
            break
        assert set(codes) == {1}  # wifi_task looked first: no group of 4 this time
        start = len(board.console)
        board.set_access_point(AccessPoint())
        board.wait_console("app: connected to", 15, start=start)
    else:
        pytest.fail("no LED code 4 in 8 times the access point went away mid-session")
    # the access point back: connected again, codes 1 and 4 cleared, readings go on
    seen = len(subscriber.on(topic))
    start = len(board.console)
    board.set_access_point(AccessPoint())
    board.wait_console("app: connected to", 15, start=start)
    subscriber.wait_for(topic, count=seen + 1)
    wait_until(lambda: led_dark_for(board, 2.2), 15, "the LED dark again", 0.1)


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
    # three more readings (publish_interval_s 1: about 3 s) while the LED is watched
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", timeout=10, count=4)
    assert time.time() > recovered + 2.1
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
    for board, (_, message) in zip(boards, cases, strict=True):
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
        start = len(board.console)
        broker.stop()
        wait_code(board, 2, timeout=30)
        # the broker closed the session under the board's publishing loop: code 4 was set, then
        # code 2 by the failed reconnect (see test_led_code_4_...)
        assert [line for line in board.console[start:] if line.startswith("app: publish failed: OSError(")]
        broker.start()  # same port, same persistence database
        board.wait_console("published sensors", 40, start=len(board.console))
        wait_until(lambda: len(sub.messages) >= 8, 20, "the readings queued on the board")
        seqs = [json.loads(p)["seq"] for _, p, _, _ in sub.messages]
        # every reading, including those taken while the broker was away, arrives once and in order
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        sub.close()


def test_firmware_imports_only_modules_of_the_esp8266_port():
    esp8266 = {"gc", "json", "time", "binascii", "machine", "micropython", "network", "asyncio", "uasyncio",
               "umqtt.simple", "os", "sys", "struct", "socket", "errno", "select", "io", "collections",
               "ntptime"}  # frozen in the ESP8266_GENERIC firmware
    own = {p.stem for p in FIRMWARE_DIR.glob("*.py")}
    for path in FIRMWARE_DIR.glob("*.py"):
        for name in re.findall(r"^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", path.read_text(), re.M):
            module = name[0] or name[1]
            assert module in esp8266 | own, f"{path.name} imports {module}"
