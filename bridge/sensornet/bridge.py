"""`sensornet bridge`: forward device messages from Mosquitto to WebSocket and TCP endpoints.

Data path, and where each guarantee comes from:

  broker --QoS 1, persistent session--> paho on the asyncio loop (sensornet.mqttloop) --inbox-->
    --parse_message_text--> Store (SQLite, WAL; one transaction per batch) --> PUBACK to the broker
    Store --one EndpointSender task per endpoint, from its cursor--> ws:// wss:// tcp://
    endpoint's acknowledgement --> the endpoint's cursor advances; rows every endpoint has are deleted

- Session: fixed client id, clean_session=False (MQTT 3.1.1 section 3.1.2.4), subscriptions
  envelope.SUBSCRIPTIONS (connect/+, status/+, sensors/+/+) at QoS 1, made again in every
  on_connect, through $share/<share_group>/... when configured (several bridges share the load,
  each with its own store). The bridge never unsubscribes, so the broker queues what devices
  publish while it is down.
- Batches: paho runs on the asyncio loop (sensornet.mqttloop: no network thread); on_message
  appends each message to an inbox and schedules one call that takes the whole inbox as one
  batch, after everything that arrived in one read of the socket.
- Acknowledgement: paho's manual_ack. A message's PUBACK goes only after its envelope is
  committed to the store (or after it was rejected, counted and logged), and only on the
  connection it came on: a crash before that and the broker redelivers it. Every envelope's id
  is derived from the message itself (envelope.message_id), so a redelivered duplicate has the
  same id and a receiver drops it.
- Backpressure: while the store holds store_max_bytes or more, the bridge takes nothing from
  its inbox and acknowledges nothing; the broker stops sending at its in-flight limit and
  queues the rest (broker/mosquitto.conf sizes its queue). Nothing handed over is dropped.
- Endpoints: each has a cursor in the store, advanced when the endpoint acknowledges
  (sensornet.senders), so a bridge killed at any moment resends from the cursor after its
  restart: at-least-once, in store order (per-device order kept), duplicates with the same id.
- Shutdown (SIGTERM/SIGINT, `Bridge.stop()`): disconnect from the broker, give the endpoints
  `drain_timeout` seconds, close the store; what is left is sent after the next start.
- Reconnects: `Backoff` (exponential with jitter) for the broker (1 s doubling to 30 s) and
  per endpoint (0.5 s doubling to 30 s). An endpoint that is down never holds up the others.

Modules: paho on the loop in sensornet.mqttloop, the inbox and its batches in sensornet.inbox,
the store in sensornet.store, Backoff and
counters in sensornet.outbox, endpoint connections and senders in sensornet.senders, envelopes
and reject reasons in sensornet.envelope
(topics from feather_huzzah.topics), config in sensornet.bridge_config, systemd notification
and Prometheus metrics in sensornet.service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from feather_huzzah import topics

from . import paths
from .bridge_config import BridgeConfig, ConfigError, load_config
from .envelope import SUBSCRIPTIONS, utc_now
from .inbox import Inbox, Message
from .mqttloop import MqttClient, MqttLoop
from .outbox import Backoff, BridgeStats
from .senders import EndpointSender
from .store import Store, StoreError, store_path

log = logging.getLogger("sensornet.bridge")


def _not_paho_noise(record: logging.LogRecord) -> bool:
    # paho 2.2 logs this at ERROR from its network loop once after every disconnect; the
    # bridge logs disconnects itself.
    return not str(record.msg).startswith("Client is not connected")


paho_log = logging.getLogger("sensornet.bridge.paho")
paho_log.addFilter(_not_paho_noise)

BROKER_RECONNECT_MIN_S = 1
BROKER_RECONNECT_MAX_S = 30
DISCONNECT_TIMEOUT_S = 2.0


def default_state_dir() -> Path:
    """$STATE_DIRECTORY (systemd's StateDirectory=, the first one), else .sensornet/bridge in the checkout."""
    first = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) if first else paths.STATE_DIR / "bridge"


def subscriptions(share_group: str | None) -> tuple[str, ...]:
    """The topic filters the bridge subscribes to: SUBSCRIPTIONS, under $share/<group>/ when shared."""
    return tuple(f"$share/{share_group}/{f}" for f in SUBSCRIPTIONS) if share_group else SUBSCRIPTIONS


class Bridge:
    """The bridge: one MQTT client, one Store, one EndpointSender per endpoint URL.

    config: BridgeConfig. state_dir: the store's directory (None: config.state_dir, else
    default_state_dir()). drain_timeout: seconds stop() lets endpoints catch up. backoff:
    () -> Backoff for each endpoint. clock: for the envelopes' received_at
    (sensornet.envelope.utc_now). synchronous: the store's SQLite synchronous mode.

    Use `await bridge.run()` (returns after the shutdown), and `await bridge.stop()` from another
    task, or `bridge.request_stop()` from a signal handler; `await bridge.wait_subscribed(timeout)`
    is True once the subscriptions are granted. `stats` holds the counters, `store` the Store
    while running, oldest_unacked_age_s the store's oldest_unacked_age() as of the last tick.
    on_ready: called once the store is open and the MQTT client started; on_tick: about once a
    second from the loop while running (the systemd watchdog, sensornet.service). One run() per
    object. run() raises StoreError when the store cannot be opened.
    """

    def __init__(self, config: BridgeConfig, *, state_dir: Path | None = None, drain_timeout: float = 3.0,
                 backoff: Callable[[], Backoff] = Backoff, clock: Callable[[], datetime] | None = None,
                 synchronous: str = "FULL", on_tick: Callable[[], None] | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.config = config
        self.state_dir = Path(state_dir or config.state_dir or default_state_dir())
        self.drain_timeout = drain_timeout
        self.stats = BridgeStats()
        self.store: Store | None = None
        self.senders: list[EndpointSender] = []
        self.subscriptions = subscriptions(config.share_group)
        self._backoff = backoff
        self._clock = clock or utc_now
        self._synchronous = synchronous
        self._on_tick, self._on_ready = on_tick, on_ready
        self.oldest_unacked_age_s = 0.0
        self._client: mqtt.Client | None = None
        self._mqtt: MqttLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inbox: Inbox | None = None
        self._session = 0  # bumped on every connect and disconnect; acks only within one connection
        self._stopping = False
        self._started = False
        # Made here, not in run(): a stop requested before run() starts is kept (asyncio.Event
        # binds to the running loop on first use, so building the Bridge outside a loop is fine).
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._subscribed = asyncio.Event()

    # ---- lifecycle (asyncio loop) ----

    async def run(self) -> None:
        """Connect and forward until stop(); then shut down cleanly (see the module docstring)."""
        self._started = True
        path = store_path(self.state_dir, self.config.mqtt.client_id)
        try:
            self.store = store = Store(path, self.config.endpoints, self.config.store_max_bytes, self._synchronous)
        except StoreError:
            self._stopped.set()
            raise
        self._inbox = inbox = Inbox(store, self.stats, max_payload_bytes=self.config.max_payload_bytes,
                                    clock=self._clock, ack=self._ack, on_stored=self._wake_senders)
        self.senders = [EndpointSender(url, store, self.stats, self._backoff(),
                                       acks=url not in self.config.endpoints_without_ack,
                                       on_advance=inbox.room_made) for url in self.config.endpoints]
        self._tasks = [asyncio.create_task(s.run(), name=f"endpoint {s.url}") for s in self.senders]
        self._tasks.append(asyncio.create_task(self._tick(), name="tick"))
        mqtt_conf = self.config.mqtt
        log.info("starting: broker %s:%d as client id %r (user %s), endpoints: %s; store %s (%d envelopes, "
                 "%d bytes)", mqtt_conf.host, mqtt_conf.port, mqtt_conf.client_id, mqtt_conf.username or "-",
                 ", ".join(self.config.endpoints), path, store.last_seq - min(store.cursors.values()),
                 store.stored_bytes)
        self._client = self._make_client()
        self._client.connect_async(mqtt_conf.host, mqtt_conf.port, mqtt_conf.keepalive_s)
        self._mqtt = MqttLoop(self._client, Backoff(BROKER_RECONNECT_MIN_S, BROKER_RECONNECT_MAX_S),
                              self._on_connect_fail)
        self._tasks.append(asyncio.create_task(self._mqtt.run(), name="mqtt"))
        if self._on_ready is not None:
            self._on_ready()
        try:
            await self._stop_requested.wait()
        finally:
            await self._shutdown()
            self._stopped.set()

    def request_stop(self) -> None:
        """Ask run() to shut down (safe from a signal handler on the loop); does not wait.

        Asked before run() starts, run() shuts down as soon as it has started.
        """
        self._stop_requested.set()

    async def stop(self) -> None:
        """Ask run() to shut down and wait until it has (at once if run() was never started)."""
        self.request_stop()
        if self._started:
            await self._stopped.wait()

    # The timeout parameter is this public API's (tests, demos): `await bridge.wait_subscribed(10)`.
    async def wait_subscribed(self, timeout: float) -> bool:  # noqa: ASYNC109
        """True once the broker granted the subscriptions, False after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
            return True
        except TimeoutError:
            return False

    async def _tick(self) -> None:
        while True:
            if self.store is not None:
                self.oldest_unacked_age_s = self.store.oldest_unacked_age()
            if self._on_tick is not None:
                self._on_tick()
            await asyncio.sleep(1.0)

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._inbox is not None:
            self._inbox.close()  # messages still arriving are not acked: the broker redelivers them
        if self._mqtt is not None:
            await self._mqtt.disconnect(DISCONNECT_TIMEOUT_S)
        store = self.store
        if store is not None:
            pending = [s for s in self.senders if store.cursors[s.url] < store.last_seq]
            if pending:
                await asyncio.gather(*(s.drain(self.drain_timeout) for s in pending))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left = ""
        if store is not None:
            left = ", ".join(f"{url} {store.backlog(url)}" for url in self.config.endpoints)
            store.close()
        log.info("stopped: %d received, %d rejected, %d acknowledged to the broker; delivered %s; "
                 "kept in the store for the next start: %s", self.stats.received, sum(self.stats.rejected.values()),
                 self.stats.acknowledged,
                 ", ".join(f"{url} {self.stats.delivered[url]}" for url in self.config.endpoints), left or "-")

    # ---- MQTT (paho's callbacks, on the asyncio loop) ----

    def _make_client(self) -> MqttClient:
        conf = self.config.mqtt
        client = MqttClient(CallbackAPIVersion.VERSION2, client_id=conf.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if conf.username:
            client.username_pw_set(conf.username, conf.password)
        if conf.ca_file:  # TLS, the broker's certificate checked against this CA (scripts/make-tls.sh)
            client.tls_set(ca_certs=conf.ca_file)
        client.enable_logger(paho_log)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        conf = self.config.mqtt
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", conf.host, conf.port, reason_code)
            return
        self._session += 1
        log.info("broker %s:%d: connected as %r, session present: %s",
                 conf.host, conf.port, conf.client_id, "yes" if flags.session_present else "no (new session)")
        client.subscribe([(f, topics.QOS) for f in self.subscriptions])

    def _on_connect_fail(self, error: BaseException) -> None:
        conf = self.config.mqtt
        log.warning("broker %s:%d: cannot connect (%s); retrying (up to every %d s)",
                    conf.host, conf.port, error, BROKER_RECONNECT_MAX_S)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._session += 1
        self._subscribed.clear()
        if not self._stopping:
            conf = self.config.mqtt
            log.warning("broker %s:%d: disconnected (%s); reconnecting", conf.host, conf.port, reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        failed = [f"{topic}: {rc}" for topic, rc in zip(self.subscriptions, reason_codes, strict=False)
                  if rc.is_failure]
        if failed:
            log.error("broker refused subscriptions (check broker/acl for user %s): %s",
                      self.config.mqtt.username, "; ".join(failed))
            return
        log.info("subscribed: %s at QoS %d", ", ".join(self.subscriptions), topics.QOS)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic: str | bytes = message.topic
        except UnicodeDecodeError:
            topic = bytes(getattr(message, "_topic", b""))
        assert self._inbox is not None  # made by run() before the client
        self._inbox.add((topic, bytes(message.payload), message.retain, message.qos, message.mid, self._session))

    # ---- the inbox's callbacks (asyncio loop) ----

    def _ack(self, batch: list[Message]) -> int:
        """PUBACK the batch's messages (called once their envelopes are committed); how many."""
        client, current, acked = self._client, self._session, 0
        if client is not None:
            for _topic, _payload, _retain, qos, mid, session in batch:
                # Only on the connection it came on; otherwise the broker redelivers it (same id).
                if qos > 0 and session == current:
                    client.ack(mid, qos)
                    acked += 1
        return acked

    def _wake_senders(self) -> None:
        for sender in self.senders:
            sender.wake()


async def serve(bridge: Bridge) -> None:
    """Run `bridge` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.request_stop)
    await bridge.run()


def main(argv: list[str] | None = None) -> int:
    """`sensornet bridge [flags]`: 0 after a clean shutdown, 2 for bad usage or configuration."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, level = load_config(argv)
    except ConfigError as e:
        print(f"sensornet bridge: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2), message already printed
        return e.code if isinstance(e.code, int) else 2
    from .service import SystemdNotifier, configure_logging, serve_metrics  # only the command needs them

    configure_logging(level)

    notifier = SystemdNotifier()
    bridge = Bridge(config, on_ready=notifier.ready, on_tick=lambda: notifier.tick(bridge.stats))
    if config.metrics_port:
        try:
            serve_metrics(bridge, config.metrics_port)
        except OSError as e:
            log.error("metrics: cannot listen on port %d: %s", config.metrics_port, e.strerror or e)
            return 1
        log.info("metrics: http://0.0.0.0:%d/metrics", config.metrics_port)
    try:
        asyncio.run(serve(bridge))
    except StoreError as e:
        log.error("%s", e)
        return 1
    finally:
        notifier.stopping()
    return 0
