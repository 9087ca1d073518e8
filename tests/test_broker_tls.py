"""The broker's TLS listener (8883) and authenticated WebSocket listener for browsers (9001), with the
certificate scripts/make-tls.sh makes: the README's mosquitto_sub recipe, the bridge and a
WebSocket MQTT client (paho, transport="websockets"), all on loopback."""

import json
import os
import ssl
import subprocess

import paho.mqtt.client as mqtt
import pytest

from sensornet.broker import Broker
from tests.helpers import (
    BRIDGE_PASSWORD,
    MONITOR_PASSWORD,
    REPO,
    Sensornet,
    free_port,
    start_endpoint,
    wait_until,
)

DEVICE = "huzzah-01ffc000"


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    """broker/tls as scripts/make-tls.sh makes it (local CA + server certificate), in a temporary directory."""
    out = tmp_path_factory.mktemp("tls")
    result = subprocess.run([str(REPO / "scripts" / "make-tls.sh"), "--dir", str(out), "pi.example"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.key").stat().st_mode & 0o777 == 0o600
    return out


@pytest.fixture
def tls_broker(tmp_path, tls_dir):
    """The repo's config with all three listeners on free loopback ports; accounts bridge, monitor, a device."""
    with Broker(tmp_path / "broker", port=free_port(), bind="127.0.0.1", tls_dir=tls_dir, tls_port=free_port(),
                ws_port=free_port(), accounts={"bridge": BRIDGE_PASSWORD, "monitor": MONITOR_PASSWORD,
                                               DEVICE: "device-pw"}) as b:
        yield b


def publish_as_device(port, topic, payload, retain=False):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", DEVICE, "-P", "device-pw",
                    "-t", topic, "-m", payload, "-q", "1", *(["-r"] if retain else [])], check=True, timeout=10)


def test_mosquitto_sub_over_tls_with_the_password_in_its_options_file(tls_broker, tls_dir, tmp_path):
    """The README's recipe: the account in mosquitto_sub's own options file (0600), not on the command line."""
    publish_as_device(tls_broker.port, f"status/{DEVICE}", "online", retain=True)
    config = tmp_path / "xdg"
    config.mkdir()
    (config / "mosquitto_sub").write_text(f"-u monitor\n-P {MONITOR_PASSWORD}\n")
    (config / "mosquitto_sub").chmod(0o600)
    argv = ["mosquitto_sub", "-h", "localhost", "-p", str(tls_broker.tls_port), "--cafile", str(tls_dir / "ca.crt"),
            "-t", "status/+", "-v", "-C", "1", "-W", "10"]
    result = subprocess.run(argv, env=dict(os.environ, XDG_CONFIG_HOME=str(config)), capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"status/{DEVICE} online"
    assert MONITOR_PASSWORD not in " ".join(argv)
    # a client that does not trust the local CA is turned away
    untrusted = subprocess.run([*argv[:5], "--cafile", "/etc/ssl/certs/ca-certificates.crt", *argv[7:]],
                               env=dict(os.environ, XDG_CONFIG_HOME=str(config)), capture_output=True, text=True,
                               timeout=20)
    assert untrusted.returncode != 0


def test_the_bridge_forwards_over_tls(tls_broker, tls_dir):
    endpoint, _, tcp_port = start_endpoint("--jsonl")
    bridge = None
    try:
        bridge = Sensornet("bridge", "--host", "localhost", "--port", str(tls_broker.tls_port),
                           "--ca-file", str(tls_dir / "ca.crt"), "--endpoint", f"tcp://127.0.0.1:{tcp_port}",
                           env=dict(os.environ, SENSORNET_BRIDGE_PASSWORD=BRIDGE_PASSWORD))
        bridge.wait_line("subscribed:", "stderr", 15)
        publish_as_device(tls_broker.port, f"sensors/{DEVICE}/tsl2561", '{"lux": 12.5}')
        line = endpoint.wait_line(f"sensors/{DEVICE}/tsl2561", "stdout", 15)
        assert json.loads(line)["payload"] == {"lux": 12.5}
        assert not [x for x in bridge.stderr if BRIDGE_PASSWORD in x]
    finally:
        if bridge:
            assert bridge.stop() == 0
        endpoint.stop()


def ws_client(port, tls_dir, username, password):
    """A paho client over MQTT-over-WebSocket with TLS, as a browser's MQTT library connects; returns
    (client, the CONNACK's reason code, messages)."""
    got, result = [], {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username, transport="websockets")
    client.tls_set(ca_certs=str(tls_dir / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, reason, p: result.setdefault("reason", reason)
    client.on_subscribe = lambda *a: result.setdefault("subscribed", True)
    client.on_message = lambda c, u, msg: got.append((msg.topic, msg.payload))
    client.connect("localhost", port)
    client.loop_start()
    wait_until(lambda: "reason" in result, 10, "the WebSocket CONNACK")
    return client, result, got


def test_the_websocket_listener_for_browsers_is_authenticated(tls_broker, tls_dir):
    intruder, result, _ = ws_client(tls_broker.ws_port, tls_dir, "monitor", "wrong")
    intruder.loop_stop()
    intruder.disconnect()
    assert result["reason"].is_failure
    client, result, got = ws_client(tls_broker.ws_port, tls_dir, "monitor", MONITOR_PASSWORD)
    try:
        assert not result["reason"].is_failure
        client.subscribe(f"sensors/{DEVICE}/#", qos=1)
        wait_until(lambda: result.get("subscribed"), 5, "the SUBACK")
        publish_as_device(tls_broker.port, f"sensors/{DEVICE}/tsl2561", '{"lux": 3}')
        wait_until(lambda: got, 10, "the reading over WebSocket")
        assert got == [(f"sensors/{DEVICE}/tsl2561", b'{"lux": 3}')]
    finally:
        client.loop_stop()
        client.disconnect()
