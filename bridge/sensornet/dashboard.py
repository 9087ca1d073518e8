"""`sensornet dashboard`: see the sensors in a browser, with history, and Home Assistant discovery.

Its own MQTT connection with the `dashboard` account (client id `dashboard`, a persistent
session, QoS 1) subscribes to connect/+, status/+, status/+/error and sensors/+/+ (and
homeassistant/status, Home Assistant's birth message). It keeps
  - a SQLite history (--db, default .sensornet/dashboard/history.sqlite3) of every numeric
    quantity of every reading, pruned to --retention-days (default 30) every hour;
  - the devices: MAC (connect/), online/offline (status/), last seen, health (sensors/<cid>/system)
    with the LED fault code in words, the last error reply to a command (status/<cid>/error);
  - Home Assistant MQTT discovery (sensornet.discovery): a retained config per quantity of
    each device whose MAC is known, published again when Home Assistant says "online" on
    homeassistant/status. Removing a device: clear its retained connect/<client_id> (an empty
    retained message, e.g. `mosquitto_pub -u <cid> -t connect/<cid> -r -n`); the dashboard then
    clears each of the device's retained discovery configs and drops its card.
and serves (sensornet.dashboard_web) the page on http://127.0.0.1:8080/ by default: a card per
device, a live chart per quantity (uPlot) fed over a WebSocket, a time range for the history and
a CSV download. On any address other than loopback a token is required (--token-file or
SENSORNET_DASHBOARD_TOKEN): the page is then opened as http://HOST:PORT/?token=TOKEN.

Bad payloads, unknown topics and oversized messages are counted and logged, never a crash. Bad
configuration exits with status 2 and a message naming the flag.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from feather_huzzah import topics

from . import discovery, paths
from .dashboard_store import NOT_QUANTITIES, Store, quantities

log = logging.getLogger("sensornet.dashboard")

ACCOUNT = "dashboard"  # the broker account, and so the client id (use_username_as_clientid)
PASSWORD_ENV = "SENSORNET_DASHBOARD_PASSWORD"
TOKEN_ENV = "SENSORNET_DASHBOARD_TOKEN"
CREDENTIAL_NAME = "mqtt-password"  # systemd LoadCredential=mqtt-password:...
SUBSCRIPTIONS = (topics.connect("+"), topics.status("+"), topics.status("+") + "/error",
                 topics.sensor("+", "+"), discovery.BIRTH_TOPIC)
HEALTH = "system"  # sensors/<cid>/system: the device's health figures, shown on its card
MAX_PAYLOAD_BYTES = 16384
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

# The red LED's codes (README, "LED error codes"); the device reports the lowest active one.
FAULTS = {
    0: "none",
    1: "Wi-Fi connection failed",
    2: "broker connection failed",
    3: "library import failed (umqtt.simple missing)",
    4: "publish failed or the link went silent",
    5: "sensor (I2C) error",
    6: "config missing or invalid",
}


def fault_words(code: Any) -> str | None:
    """The README's words for LED code `code` (int), "code N" for a code it does not list, None
    for no code."""
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    return FAULTS.get(code, f"code {code}")


def device_view(device: dict[str, Any]) -> dict[str, Any]:
    """A device as the page gets it: the store's dict plus "fault" (the LED fault in words, or
    None without health figures)."""
    health = device.get("health") or {}
    return {**device, "fault": fault_words(health.get("fault"))}


class Dashboard:
    """The MQTT side: messages in, the store and discovery updated, events out.

    on_event: called (from the MQTT thread) with each event for the page, a dict with "type":
    "device" (with "device": device_view()), "reading" ({"client_id", "sensor", "t", "values"})
    or "forget" ({"client_id"}). rejected: Counter of dropped messages by reason.
    """

    def __init__(self, store: Store, client: mqtt.Client, on_event: Callable[[dict[str, Any]], None] | None = None,
                 prefix: str = discovery.PREFIX):
        self.store = store
        self.client = client
        self.prefix = prefix
        self.on_event: Callable[[dict[str, Any]], None] = on_event or (lambda event: None)
        self.rejected: collections.Counter[str] = collections.Counter()
        self.subscribed = False

    # ---- MQTT callbacks ----

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        client.subscribe([(t, topics.QOS) for t in SUBSCRIPTIONS])

    def on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        refused = [t for t, r in zip(SUBSCRIPTIONS, reasons, strict=False) if r.is_failure]
        if refused:
            log.error("the broker refused the subscriptions %s: see broker/acl, user %s", refused, ACCOUNT)
        self.subscribed = True
        print(f"dashboard: subscribed: {' '.join(SUBSCRIPTIONS)}", file=sys.stderr, flush=True)

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.handle(msg.topic, bytes(msg.payload), time.time())
        except Exception:  # never let one message stop the others
            self.rejected["error"] += 1
            log.exception("could not handle a message on %s", msg.topic)

    # ---- messages ----

    def reject(self, reason: str, topic: str) -> None:
        self.rejected[reason] += 1
        log.warning("dropped a message on %s: %s (%d so far)", topic, reason, self.rejected[reason])

    def handle(self, topic: str, payload: bytes, now: float) -> None:
        """One message: `topic` (str), `payload` (bytes), received at `now` (Unix s)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self.reject("too_large", topic)
        levels = topic.split("/")
        if topic == discovery.BIRTH_TOPIC:
            if payload == b"online":
                self.publish_all_discovery()
            return None
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return self.reject("not_utf8", topic)
        if len(levels) == 2 and levels[0] == topics.CONNECT:
            return self._connect(levels[1], text)
        if len(levels) == 2 and levels[0] == topics.STATUS:
            if not text and self.store.device(levels[1]) is None:
                return None  # a removed device's retained status cleared too
            self.store.update_device(levels[1], status=text or None)
            return self._device_changed(levels[1])
        if len(levels) == 3 and levels[0] == topics.STATUS and levels[2] == "error":
            error = _json_object(text)
            if error is None:
                return self.reject("bad_json", topic)
            self.store.update_device(levels[1], last_error={**error, "t": now})
            return self._device_changed(levels[1])
        if len(levels) == 3 and levels[0] == topics.SENSORS:
            reading = _json_object(text)
            if reading is None:
                return self.reject("bad_json", topic)
            return self._reading(levels[1], levels[2], reading, now)
        return self.reject("unknown_topic", topic)

    def _connect(self, client_id: str, text: str) -> None:
        if not text:  # the retained connect/ message cleared: the device is removed
            return self.forget(client_id)
        mac = text.strip().lower()
        if not MAC.fullmatch(mac):
            return self.reject("bad_mac", topics.connect(client_id))
        self.store.update_device(client_id, mac=mac)
        self.publish_discovery(client_id)
        return self._device_changed(client_id)

    def _reading(self, client_id: str, sensor: str, reading: dict[str, Any], now: float) -> None:
        values = quantities(reading)
        ts = reading.get("ts") if isinstance(reading.get("ts"), int) else None
        if sensor == HEALTH:
            self.store.update_device(client_id, health=reading)
        new_quantity = False
        if values:
            new_quantity = self.store.add_reading(client_id, sensor, values, now, ts)
            shown = {k: values.get(k) for k, v in reading.items()
                     if k in values or (v is None and k not in NOT_QUANTITIES)}  # numbers, and null (lux saturated)
            self.on_event({"type": "reading", "client_id": client_id, "sensor": sensor, "t": now, "values": shown})
        else:
            self.store.update_device(client_id, last_seen=now)
        if new_quantity or (sensor == HEALTH and "version" in reading):
            self.publish_discovery(client_id)
        self._device_changed(client_id)

    def _device_changed(self, client_id: str) -> None:
        device = self.store.device(client_id)
        if device:
            self.on_event({"type": "device", "device": device_view(device)})

    # ---- Home Assistant discovery ----

    def publish_discovery(self, client_id: str) -> int:
        """Publish (retained, QoS 1) the discovery config of every quantity the device has
        published, once its MAC is known; return how many."""
        device = self.store.device(client_id)
        if not device or not device["mac"]:
            return 0
        version = (device["health"] or {}).get("version")
        configs = discovery.configs(client_id, device["mac"], device["sensors"],
                                    version if isinstance(version, str) else None, self.prefix)
        for topic, config in configs.items():
            self.client.publish(topic, json.dumps(config, sort_keys=True), qos=topics.QOS, retain=True)
        return len(configs)

    def publish_all_discovery(self) -> None:
        for device in self.store.devices():
            self.publish_discovery(device["client_id"])

    def forget(self, client_id: str) -> None:
        """Clear the device's retained discovery configs (empty retained messages), drop its card."""
        device = self.store.device(client_id)
        if device:
            for sensor_quantities in device["sensors"].values():
                for quantity in sensor_quantities:
                    self.client.publish(discovery.config_topic(client_id, quantity, self.prefix), b"",
                                        qos=topics.QOS, retain=True)
        self.store.forget_device(client_id)
        log.info("removed %s: its connect/ message was cleared", client_id)
        self.on_event({"type": "forget", "client_id": client_id})


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# ---- configuration ----

class ConfigError(ValueError):
    """Bad configuration; str(error) is the message for stderr (exit status 2)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(flag_file: str | None, env_name: str, credential: str | None, environ: dict[str, str],
                flag: str) -> str | None:
    """A secret from `flag_file`, else $env_name, else $CREDENTIALS_DIRECTORY/credential; None if none."""
    path = flag_file
    if not path and environ.get(env_name):
        return environ[env_name]
    if not path and credential and environ.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(environ["CREDENTIALS_DIRECTORY"]) / credential
        path = str(candidate) if candidate.exists() else None
    if not path:
        return None
    try:
        secret = Path(path).read_text().removesuffix("\n")
    except OSError as e:
        raise ConfigError(f"{flag}: cannot read {path!r}: {e.strerror}; give a readable file") from None
    if not secret:
        raise ConfigError(f"{flag}: {path!r} is empty; put the secret in it")
    return secret


def parse_args(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sensornet dashboard", description=__doc__.split("\n\n")[0],
                                     epilog=f"Broker password: --password-file, ${PASSWORD_ENV} or the systemd "
                                            f"credential {CREDENTIAL_NAME}. Token: --token-file or ${TOKEN_ENV}.")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve the page on (default 127.0.0.1; "
                        "any other needs a token)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0: any free port)")
    parser.add_argument("--token-file", help=f"file holding the token the page needs (or ${TOKEN_ENV})")
    parser.add_argument("--mqtt-host", default="127.0.0.1", help="the broker (default 127.0.0.1)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="the broker's port (default 1883)")
    parser.add_argument("--username", default=ACCOUNT, help=f"broker account, also the client id (default {ACCOUNT})")
    parser.add_argument("--password-file", help=f"file holding the broker password (or ${PASSWORD_ENV})")
    parser.add_argument("--db", type=Path, default=paths.STATE_DIR / "dashboard" / "history.sqlite3",
                        help="the SQLite history (default .sensornet/dashboard/history.sqlite3)")
    parser.add_argument("--retention-days", type=float, default=30.0,
                        help="keep readings this many days (default 30)")
    parser.add_argument("--discovery-prefix", default=discovery.PREFIX,
                        help=f"Home Assistant's discovery prefix (default {discovery.PREFIX})")
    args = parser.parse_args(argv)
    for flag, port in (("--port", args.port), ("--mqtt-port", args.mqtt_port)):
        if not 0 <= port <= 65535 or (flag == "--mqtt-port" and port == 0):
            raise ConfigError(f"{flag}: {port} is not a TCP port; use 1-65535")
    if not args.retention_days > 0:
        raise ConfigError(f"--retention-days: {args.retention_days:g} must be more than 0 (e.g. 30)")
    args.password = read_secret(args.password_file, PASSWORD_ENV, CREDENTIAL_NAME, environ, "--password-file")
    args.token = read_secret(args.token_file, TOKEN_ENV, None, environ, "--token-file")
    if not is_loopback(args.host) and not args.token:
        raise ConfigError(f"--host: {args.host} is not a loopback address, so the page needs a token: give "
                          f"--token-file FILE or ${TOKEN_ENV} (or serve on 127.0.0.1)")
    return args


def make_client(args: argparse.Namespace) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.username, clean_session=False)
    client.username_pw_set(args.username, args.password)
    client.reconnect_delay_set(1, 30)
    return client


async def run(args: argparse.Namespace) -> int:
    from .dashboard_web import WebServer  # websockets, only when serving

    store = Store(args.db, args.retention_days)
    client = make_client(args)
    web = WebServer(store, args.host, args.port, args.token)
    dashboard = Dashboard(store, client, web.publish_threadsafe, args.discovery_prefix)
    client.on_connect = dashboard.on_connect
    client.on_subscribe = dashboard.on_subscribe
    client.on_message = dashboard.on_message
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await web.start()
    print(f"dashboard: http://{web.url_host}:{web.port}/ (history in {args.db}, kept "
          f"{args.retention_days:g} days)", file=sys.stderr, flush=True)
    client.connect_async(args.mqtt_host, args.mqtt_port, keepalive=60)
    client.loop_start()
    try:
        while not stop.is_set():
            pruned = store.prune()
            if pruned:
                log.info("pruned %d readings older than %g days", pruned, args.retention_days)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 3600)
    finally:
        client.disconnect()
        client.loop_stop()
        await web.stop()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="dashboard: %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # not a line per HTTP request
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except ConfigError as e:
        print(f"sensornet dashboard: {e}", file=sys.stderr)
        return 2
    return asyncio.run(run(args))
