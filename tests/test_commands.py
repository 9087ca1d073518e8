"""Remote commands on cmd/<client_id>/<name>, sent with `sensornet cmd` as the operator account
through the real broker (its ACL) to the firmware on a virtual board."""

import json
import os
import time

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import DEVICE_PASSWORD, Subscriber, run_sensornet, wait_until
from virtual_huzzah.board import SOFT_RESET, client_id_for

CHIP = 0xC0FF31
CLIENT_ID = client_id_for(CHIP)
OPERATOR_PASSWORD = "operator-test-password"


def cmd(broker, *args: str, timeout: float = 10):
    env = dict(os.environ, SENSORNET_OPERATOR_PASSWORD=OPERATOR_PASSWORD)
    return run_sensornet("cmd", *args, "--host", "127.0.0.1", "--port", str(broker.port), "--timeout", str(timeout),
                         env=env)


def started(broker, subscriber, make_board, **kwargs):
    broker.add_account("operator", OPERATOR_PASSWORD)
    board = make_board(CHIP, broker.port, broker, **kwargs)
    subscriber.wait_for(f"sensors/{CLIENT_ID}/system")  # connected and subscribed to its cmd/
    return board


def test_status_and_interval(broker, subscriber, make_board):
    board = started(broker, subscriber, make_board)
    result = cmd(broker, CLIENT_ID, "status")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reset_cause"] == "power_on"
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=3)  # publish_interval_s 1
    result = cmd(broker, CLIENT_ID, "interval", "30")
    assert result.returncode == 0, result.stderr
    assert "uptime_s" in json.loads(result.stdout)
    time.sleep(1.5)  # a reading already under way may still come
    before = len(subscriber.on(f"sensors/{CLIENT_ID}/tsl2561"))
    time.sleep(4)
    assert len(subscriber.on(f"sensors/{CLIENT_ID}/tsl2561")) <= before + 1
    assert "app: command interval done" in board.console_text()


def test_bad_commands_get_an_error_reply_and_the_board_goes_on(broker, subscriber, make_board):
    # a command left retained would act again at every connect (a reboot: a boot loop): dropped
    broker.add_account("operator", OPERATOR_PASSWORD)
    operator = Subscriber(broker.port, (f"status/{CLIENT_ID}/error",), "operator", OPERATOR_PASSWORD, "operator")
    # (b" ": a reboot once stripped; an empty retained payload would only clear the topic)
    operator.client.publish(f"cmd/{CLIENT_ID}/reboot", b" ", qos=1, retain=True).wait_for_publish(5)
    operator.close()
    board = started(broker, subscriber, make_board)
    board.wait_console("incoming retained message of", 10)
    cases = [("interval", "abc", "interval"), ("interval", "0", "1 to 86400"), ("interval", "1e9", "1 to 86400"),
             ("interval", "nan", "1 to 86400"), ("identify", "now", "takes no value"),
             ("dance", "", "unknown command")]
    for name, value, says in cases:
        result = cmd(broker, CLIENT_ID, name, *([value] if value else []))
        assert result.returncode == 1, (name, value, result.stdout, result.stderr)
        reply = json.loads(result.stdout)
        assert reply["cmd"] == name
        assert says in reply["error"], reply
    # oversized, then not UTF-8: the first counted, logged and dropped, the second an error reply
    # (read as the operator: the only account besides the device that may; its client id is its name)
    operator = Subscriber(broker.port, (f"status/{CLIENT_ID}/error",), "operator", OPERATOR_PASSWORD, "operator")
    try:
        operator.client.publish(f"cmd/{CLIENT_ID}/interval", b"9" * 4000, qos=1).wait_for_publish(5)
        operator.client.publish(f"cmd/{CLIENT_ID}/interval", b"\xff\xfe", qos=1).wait_for_publish(5)
        [(_, payload, _, _)] = operator.wait_for(f"status/{CLIENT_ID}/error")
    finally:
        operator.close()
    assert json.loads(payload) == {"cmd": "interval", "error": "payload is not UTF-8 text"}
    board.wait_console("incoming message of 4", 10)
    # still alive, still reading, never reset; a good command still works
    seen = len(subscriber.on(f"sensors/{CLIENT_ID}/tsl2561"))
    subscriber.wait_for(f"sensors/{CLIENT_ID}/tsl2561", count=seen + 2)
    assert cmd(broker, CLIENT_ID, "status").returncode == 0
    assert board.resets == []
    assert "Traceback" not in board.console_text()


def test_identify_blinks_the_blue_led_10_s(broker, subscriber, make_board):
    board = started(broker, subscriber, make_board)
    sent = time.time()
    assert cmd(broker, CLIENT_ID, "identify").returncode == 0
    wait_until(lambda: [t for t, _ in board.pin_timeline(2) if t > sent + 9.5], 15, "the blinking's end")
    time.sleep(0.5)
    timeline = [(t, level) for t, level in board.pin_timeline(2) if t >= sent]
    assert timeline[-1][1] == 1  # dark at the end (active low)
    assert timeline[-1][0] - timeline[0][0] == pytest.approx(10, abs=0.8)
    assert len(timeline) >= 60  # 4 blinks a second


def test_reboot_resets_the_board(broker, subscriber, make_board):
    board = started(broker, subscriber, make_board)
    result = cmd(broker, CLIENT_ID, "reboot")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: board.resets, 10, "a reset")
    assert board.resets[0][1] == SOFT_RESET
    [_, (_, payload, _, _)] = subscriber.wait_for(f"sensors/{CLIENT_ID}/system", count=3, timeout=30)[1:]
    assert json.loads(payload)["reset_cause"] == "soft"


def test_acl_a_device_reads_only_its_own_commands_and_cannot_send_any(broker, subscriber, make_board):
    board = started(broker, subscriber, make_board)
    other = client_id_for(0xC0FF32)
    broker.add_account(other, DEVICE_PASSWORD)
    got: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=other)
    client.username_pw_set(other, DEVICE_PASSWORD)
    client.on_message = lambda _c, _u, msg: got.append(msg.topic)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe("cmd/#", qos=1)
    time.sleep(0.5)
    client.publish(f"cmd/{CLIENT_ID}/reboot", b"", qos=1).wait_for_publish(5)
    assert cmd(broker, CLIENT_ID, "status").returncode == 0  # the operator's command arrives...
    time.sleep(1)
    client.disconnect()
    client.loop_stop()
    assert got == []  # ...but not at the other device
    assert board.resets == []  # and the other device's reboot never reached the board


def test_cmd_usage_errors_exit_2():
    result = run_sensornet("cmd", "huzzah-1/x", "status", env=dict(os.environ, SENSORNET_OPERATOR_PASSWORD="x"))
    assert result.returncode == 2
    assert "CLIENT_ID" in result.stderr
    env = {k: v for k, v in os.environ.items() if k != "SENSORNET_OPERATOR_PASSWORD"}
    result = run_sensornet("cmd", "huzzah-1", "status", env=env)
    assert result.returncode == 2
    assert "SENSORNET_OPERATOR_PASSWORD" in result.stderr
