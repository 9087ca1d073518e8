"""broker/mosquitto.conf and broker/acl on a real Mosquitto: authentication and per-device ACLs."""

import subprocess

import paho.mqtt.client as mqtt
import pytest

from sensornet.broker import render_config
from tests.conftest import BRIDGE_PASSWORD, Subscriber, wait_until

A, B = "huzzah-01ffc000", "huzzah-02ffc000"


def connect(port, username=None, password=None, client_id="test-client"):
    """Connect with paho; return (client, reason code of the CONNACK)."""
    result = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if username:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, reason, p: result.setdefault("reason", reason)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(lambda: "reason" in result, 5, "CONNACK")
    return client, result["reason"]


def publish(port, username, password, topic, payload=b"x"):
    """Publish once at QoS 1 with mosquitto_pub, on a connection of its own (Mosquitto 2.0.11
    closes a client's connection after a publish its ACL denies). Returns the exit status."""
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", username, "-P", password,
                           "-i", username, "-t", topic, "-m", payload, "-q", "1"], capture_output=True).returncode


def close(client):
    client.loop_stop()
    client.disconnect()


def test_anonymous_clients_are_refused(broker):
    client, reason = connect(broker.port)
    close(client)
    assert reason.is_failure and reason.getName() == "Not authorized"


def test_a_wrong_password_is_refused(broker):
    broker.add_account(A, "right")
    client, reason = connect(broker.port, A, "wrong")
    close(client)
    assert reason.is_failure


def test_a_device_may_write_only_its_own_topics(broker, subscriber):
    broker.add_account(A, "pw-a")
    for topic in (f"connect/{B}", f"status/{B}", f"sensors/{B}/tsl2561", "sensors/x", "other/topic"):
        publish(broker.port, A, "pw-a", topic, "forged")
    assert publish(broker.port, A, "pw-a", f"sensors/{A}/tsl2561", "{}") == 0
    subscriber.wait_for(f"sensors/{A}/tsl2561")  # published last, so the forged ones had their chance
    assert [m[0] for m in subscriber.messages] == [f"sensors/{A}/tsl2561"]


def test_a_device_cannot_read_other_devices(broker):
    broker.add_account(A, "pw-a")
    broker.add_account(B, "pw-b")
    spy = Subscriber(broker.port, topics=("#", f"sensors/{B}/#"), username=A, password="pw-a")
    bridge = Subscriber(broker.port, topics=(f"sensors/{B}/#",))
    client, _ = connect(broker.port, B, "pw-b", client_id=B)
    try:
        client.publish(f"sensors/{B}/tsl2561", b"{}", qos=1).wait_for_publish(5)
        bridge.wait_for(f"sensors/{B}/tsl2561")  # delivered where it may be read...
        assert spy.messages == []  # ...and not to another device's account
    finally:
        close(client)
        spy.close()
        bridge.close()


def test_the_bridge_account_reads_but_cannot_write(broker, subscriber):
    publish(broker.port, "bridge", BRIDGE_PASSWORD, f"sensors/{A}/tsl2561", "forged")
    publish(broker.port, "bridge", BRIDGE_PASSWORD, f"status/{A}", "forged")
    broker.add_account(A, "pw-a")
    assert publish(broker.port, A, "pw-a", f"status/{A}", "online") == 0
    subscriber.wait_for(f"status/{A}")
    assert [m[:2] for m in subscriber.messages] == [(f"status/{A}", b"online")]


def test_the_local_config_is_the_image_config_with_local_paths(tmp_path):
    from sensornet import paths
    template = (paths.BROKER_DIR / "mosquitto.conf").read_text()
    local = render_config(template, tmp_path, port=18830, bind="127.0.0.1")
    settings = [line for line in local.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if "/mosquitto/" in line]
    assert "listener 18830 127.0.0.1" in local
    for line in ("allow_anonymous false", "persistence true", f"password_file {tmp_path}/passwd",
                 f"acl_file {paths.BROKER_DIR}/acl"):
        assert line in local
    assert "autosave_interval 1800" not in local
    with pytest.raises(Exception):
        render_config("# no listener\n", tmp_path)
