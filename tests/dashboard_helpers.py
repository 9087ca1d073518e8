"""What test_dashboard.py and test_discovery.py share: `sensornet dashboard` as a child process on
the test broker with its own account, a publisher with a device's account, and HTTP GETs."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import DEVICE_PASSWORD, Sensornet

DASHBOARD_PASSWORD = "dashboard-test-password"
HOMEASSISTANT_PASSWORD = "homeassistant-test-password"


class Dashboard:
    """`sensornet dashboard` on a free loopback port, subscribed to the test broker with the
    `dashboard` account (added to the broker). .url: http://127.0.0.1:PORT/ once it serves."""

    def __init__(self, broker: Any, db: Path, *flags: str, env: dict[str, str] | None = None):
        broker.add_account("dashboard", DASHBOARD_PASSWORD)
        self.db = db
        self.process = Sensornet("dashboard", "--port", "0", "--mqtt-port", str(broker.port), "--db", str(db), *flags,
                                 env=dict(os.environ, SENSORNET_DASHBOARD_PASSWORD=DASHBOARD_PASSWORD, **(env or {})))
        try:
            line = self.process.wait_line("dashboard: http://", "stderr", 20)
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            assert match, line
            self.url = match[1]
            self.process.wait_line("dashboard: subscribed:", "stderr", 15)
        except BaseException:
            self.process.stop()
            raise

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """GET `path` (e.g. "api/devices"): (status, headers, body)."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def stop(self) -> int:
        return self.process.stop()


class Publisher:
    """A real MQTT client publishing with an account (a device's by default: its name is its client id)."""

    def __init__(self, port: int, account: str, password: str = DEVICE_PASSWORD):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=account if account.startswith("huzzah-")
                                  else f"{account}-{uuid.uuid4().hex[:6]}")
        self.client.username_pw_set(account, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        """Publish `payload` (dict: as JSON; str or bytes as is) at QoS 1 and wait for the PUBACK."""
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
