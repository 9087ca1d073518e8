"""broker/mosquitto.conf and broker/acl on a real Mosquitto: authentication and per-device ACLs."""

import re
import subprocess

import paho.mqtt.client as mqtt
import pytest

from sensornet import paths
from sensornet.broker import BrokerError, render_config
from tests.helpers import BRIDGE_PASSWORD, Subscriber, wait_until

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


def publish(port, username, password, topic, payload="x"):
    """Publish once at QoS 1 with mosquitto_pub (MQTT 3.1.1), on a connection of its own; return
    its exit status.

    Observed with Mosquitto 2.0.11: a QoS 1 PUBLISH the ACL denies is answered with an ordinary
    PUBACK (MQTT 3.1.1 has no reason codes; over MQTT 5 the PUBACK carries 135, not authorized),
    the message is dropped, and then the broker closes the connection (at QoS 0: closes it at
    once). mosquitto_pub has had its PUBACK and is disconnecting anyway, so it exits 0 for a
    forged publish exactly as for an allowed one: the exit status says nothing about the ACL;
    what the subscribers get does (and the connection closing:
    test_a_denied_publish_is_acknowledged_then_the_connection_is_closed).
    """
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", username, "-P", password,
                           "-i", username, "-t", topic, "-m", payload, "-q", "1"], capture_output=True).returncode


def close(client):
    client.loop_stop()
    client.disconnect()


def test_anonymous_clients_are_refused(broker):
    client, reason = connect(broker.port)
    close(client)
    assert reason.is_failure
    assert reason.getName() == "Not authorized"


def test_a_wrong_password_is_refused(broker):
    broker.add_account(A, "right")
    client, reason = connect(broker.port, A, "wrong")
    close(client)
    assert reason.is_failure
    assert reason.getName() == "Not authorized"  # Mosquitto 2.0 answers 5 (not 4, bad user name or password)


def test_a_device_may_write_only_its_own_topics(broker, subscriber):
    broker.add_account(A, "pw-a")
    for topic in (f"connect/{B}", f"status/{B}", f"sensors/{B}/tsl2561", "sensors/x", "other/topic"):
        assert publish(broker.port, A, "pw-a", topic, "forged") == 0  # acknowledged and dropped: see publish()
    assert publish(broker.port, A, "pw-a", f"sensors/{A}/tsl2561", "{}") == 0
    subscriber.wait_for(f"sensors/{A}/tsl2561")  # published last, so the forged ones had their chance
    assert [m[0] for m in subscriber.messages] == [f"sensors/{A}/tsl2561"]


def test_a_denied_publish_is_acknowledged_then_the_connection_is_closed(broker, subscriber):
    broker.add_account(A, "pw-a")
    client, reason = connect(broker.port, A, "pw-a", client_id=A)
    dropped = []
    client.on_disconnect = lambda c, u, flags, reason, p: dropped.append(reason)
    try:
        assert not reason.is_failure
        forged = client.publish(f"status/{B}", b"forged", qos=1)
        forged.wait_for_publish(5)
        assert forged.is_published()  # the PUBACK came back...
        wait_until(lambda: dropped, 5, "the broker closing the connection")  # ...and then the connection closed
        assert dropped[0].is_failure  # by the broker, not by us
    finally:
        close(client)
    assert publish(broker.port, A, "pw-a", f"status/{A}", "online") == 0
    subscriber.wait_for(f"status/{A}")
    assert [m[:2] for m in subscriber.messages] == [(f"status/{A}", b"online")]


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
    assert publish(broker.port, "bridge", BRIDGE_PASSWORD, f"sensors/{A}/tsl2561", "forged") == 0  # see publish()
    assert publish(broker.port, "bridge", BRIDGE_PASSWORD, f"status/{A}", "forged") == 0
    broker.add_account(A, "pw-a")
    assert publish(broker.port, A, "pw-a", f"status/{A}", "online") == 0
    subscriber.wait_for(f"status/{A}")
    assert [m[:2] for m in subscriber.messages] == [(f"status/{A}", b"online")]


def test_the_local_config_is_the_image_config_with_local_paths(tmp_path):
    template = (paths.BROKER_DIR / "mosquitto.conf").read_text()
    local = render_config(template, tmp_path, port=18830, bind="127.0.0.1")
    settings = [line for line in local.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if "/mosquitto/" in line]
    assert "listener 18830 127.0.0.1" in local
    for line in ("allow_anonymous false", "persistence true", f"password_file {tmp_path}/passwd",
                 f"acl_file {paths.BROKER_DIR}/acl"):
        assert line in local
    assert "autosave_interval 1800" not in local
    with pytest.raises(BrokerError, match="broker/mosquitto.conf has no `listener 1883` line"):
        render_config("# no listener\n", tmp_path)


def test_a_device_account_cannot_take_over_or_wipe_the_bridge_session(broker):
    """use_username_as_clientid: a connection's client id is its account's name, whatever it asks for."""
    broker.add_account(A, "pw-a")
    broker.add_account(B, "pw-b")
    got = []
    bridge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bridge", clean_session=False)
    bridge.username_pw_set("bridge", BRIDGE_PASSWORD)
    bridge.on_message = lambda c, u, msg: got.append(msg.topic)
    subscribed = []
    bridge.on_subscribe = lambda *a: subscribed.append(1)
    bridge.connect("127.0.0.1", broker.port)
    bridge.loop_start()
    bridge.subscribe("sensors/#", qos=1)
    wait_until(lambda: subscribed, 5, "the bridge's SUBACK")
    close(bridge)  # its persistent session stays at the broker, queueing QoS 1 messages
    # device A asks for the bridge's client id with a clean session: it would wipe the bridge's session
    thief, reason = connect(broker.port, A, "pw-a", client_id="bridge")
    assert not reason.is_failure
    close(thief)
    assert publish(broker.port, B, "pw-b", f"sensors/{B}/tsl2561", "{}") == 0  # while the bridge is away
    present = []
    bridge.on_connect = lambda c, u, flags, reason, p: present.append(flags.session_present)
    bridge.reconnect()
    bridge.loop_start()
    try:
        wait_until(lambda: present, 5, "the bridge's CONNACK")
        assert present == [True]  # its session survived...
        wait_until(lambda: got, 5, "the message queued in the bridge's session")
        assert got == [f"sensors/{B}/tsl2561"]  # ...with what was queued in it
    finally:
        close(bridge)


def test_a_device_with_another_devices_client_id_neither_kicks_it_off_nor_fires_its_will(broker, subscriber):
    broker.add_account(A, "pw-a")
    broker.add_account(B, "pw-b")
    dropped = []
    victim = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=B)
    victim.username_pw_set(B, "pw-b")
    victim.will_set(f"status/{B}", b"offline", qos=1, retain=True)
    victim.on_disconnect = lambda c, u, flags, reason, p: dropped.append(reason)
    connected = []
    victim.on_connect = lambda c, u, flags, reason, p: connected.append(reason)
    victim.connect("127.0.0.1", broker.port)
    victim.loop_start()
    try:
        wait_until(lambda: connected, 5, "B's CONNACK")
        thief, reason = connect(broker.port, A, "pw-a", client_id=B)  # A claims B's client id
        assert not reason.is_failure  # let in, as A (its own client id)
        close(thief)
        info = victim.publish(f"sensors/{B}/tsl2561", b"{}", qos=1)  # after A's CONNECT was handled
        info.wait_for_publish(5)
        subscriber.wait_for(f"sensors/{B}/tsl2561")
        assert dropped == []  # B was not kicked off...
        assert subscriber.on(f"status/{B}") == []  # ...and its last will did not fire
    finally:
        close(victim)


def test_the_tls_listeners_are_rendered_only_when_asked_for(tmp_path):
    template = (paths.BROKER_DIR / "mosquitto.conf").read_text()
    plain = render_config(template, tmp_path, port=18830, bind="127.0.0.1", tls_dir=tmp_path / "tls")
    assert [line for line in plain.splitlines() if line.startswith("listener")] == ["listener 18830 127.0.0.1"]
    assert "certfile" not in plain
    full = render_config(template, tmp_path, port=18830, bind="127.0.0.1", tls_dir=tmp_path / "tls", tls_port=18831,
                         ws_port=18832)
    assert [line for line in full.splitlines() if line.startswith("listener")] == [
        "listener 18830 127.0.0.1", "listener 18831 127.0.0.1", "listener 18832 127.0.0.1"]
    assert f"certfile {tmp_path}/tls/server.crt" in full
    # every listener gives a connection its account's name as client id
    assert full.count("use_username_as_clientid true") == 3


def test_the_readme_recipes_put_no_password_on_a_command_line():
    readme = (paths.REPO / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.S))
    assert blocks
    assert "--account" not in blocks
    assert "--password " not in blocks
    assert "mosquitto_passwd -b" not in blocks
    assert not re.search(r"mosquitto_(sub|pub)[^\n]* -P ", blocks)
