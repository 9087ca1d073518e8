"""Shared fixtures: a real Mosquitto running the repo's broker config on a free loopback port."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from sensornet.broker import Broker, free_port  # noqa: F401 - tests import free_port from here
from virtual_huzzah.board import AccessPoint, VirtualBoard, client_id_for

BRIDGE_PASSWORD = "bridge-test-password"


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto with broker/mosquitto.conf and broker/acl, account `bridge` only.

    Add device accounts with `broker.add_account(client_id, password)`.
    """
    with Broker(tmp_path / "broker", port=free_port(), bind="127.0.0.1",
                accounts={"bridge": BRIDGE_PASSWORD}) as b:
        yield b


DEVICE_PASSWORD = "device-test-password"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate()` until it returns something truthy; return that. Raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Subscriber:
    """A real MQTT client (paho) subscribed on the test broker; collects every message it gets.

    messages: list of (topic str, payload bytes, retain bool, qos int), in arrival order.
    """

    def __init__(self, port: int, topics=("#",), username: str = "bridge", password: str = BRIDGE_PASSWORD,
                 client_id: str | None = None, clean_session: bool = True):
        self.messages: list[tuple[str, bytes, bool, int]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=clean_session,
                                  client_id=client_id or f"test-{uuid.uuid4().hex[:8]}")
        self.client.reconnect_delay_set(0.2, 1)
        self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), msg.qos))

    def on(self, topic: str) -> list[tuple[str, bytes, bool, int]]:
        with self._lock:
            return [m for m in self.messages if m[0] == topic]

    def wait_for(self, topic: str, timeout: float = 15, count: int = 1):
        """The first `count` messages on `topic`, waiting up to `timeout` s for them."""
        return wait_until(lambda: len(self.on(topic)) >= count and self.on(topic)[:count], timeout,
                          f"{count} message(s) on {topic}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(broker):
    s = Subscriber(broker.port)
    yield s
    s.close()


def device_config(client_id: str, port: int, password: str = DEVICE_PASSWORD, **overrides) -> dict:
    """A board's config.json (dict) for the test broker on 127.0.0.1:port and the default simulated AP."""
    ap = AccessPoint()
    cfg = {"wifi_ssid": ap.ssid, "wifi_password": ap.password, "mqtt_host": "127.0.0.1", "mqtt_port": port,
           "mqtt_user": client_id, "mqtt_password": password, "client_id": None, "publish_interval_s": 1,
           "wifi_timeout_s": 3}
    cfg.update(overrides)
    return cfg


@pytest.fixture
def make_board(tmp_path):
    """Factory: make_board(chip_id, port=None, **VirtualBoard kwargs) -> a started VirtualBoard.

    With `port`, the board gets a config for the test broker (and its account must exist: pass
    broker= to have it added). Every board is powered off at teardown.
    """
    made = []

    def make(chip_id: int = 0xC0FF01, port: int | None = None, broker=None, start: bool = True, **kwargs):
        client_id = client_id_for(chip_id)
        if port is not None and "config" not in kwargs:
            kwargs["config"] = device_config(client_id, port)
        if broker is not None:
            broker.add_account(client_id, DEVICE_PASSWORD)
        board = VirtualBoard(tmp_path / client_id, chip_id, **kwargs)
        made.append(board)
        return board.start() if start else board

    yield make
    for b in made:
        b.stop()
