"""`sensornet bridge`: forward device messages from Mosquitto to WebSocket and TCP endpoints.

Data path, and where each guarantee comes from:

  broker --QoS 1, persistent session--> paho thread --call_soon_threadsafe--> asyncio loop
    --parse_message--> one bounded Outbox per endpoint --EndpointSender task--> ws:// wss:// tcp://

- Session: fixed client id, clean_session=False (MQTT 3.1.1 section 3.1.2.4), subscriptions
  envelope.SUBSCRIPTIONS (connect/+, status/+, sensors/+/+) at QoS 1, made again in every on_connect. The bridge never
  unsubscribes, so the broker queues what devices publish while the bridge is down.
- Acknowledgement: paho's manual_ack. The PUBACK for a message goes after its envelope is in
  every endpoint's Outbox (or after it was rejected): a crash before that and the broker
  redelivers it to the same session.
- Outbox: FIFO of envelopes, at most queue_size; when full the oldest is dropped (counted,
  logged). An envelope leaves the Outbox only after send() returned for that endpoint; on a
  failure it stays and is sent again after reconnecting (at-least-once: an endpoint may see
  a duplicate, never a gap, except for overflow drops).
- Shutdown (SIGTERM/SIGINT, `Bridge.stop()`): disconnect from the broker (the session and its
  queue stay on the broker), give the endpoints `drain_timeout` seconds to take what is queued,
  then save what is left to `state_dir` (systemd's $STATE_DIRECTORY) to send after the next start.
- Reconnects: paho's reconnect_delay_set for the broker; `Backoff` (exponential with jitter,
  0.5 s doubling to 30 s) per endpoint. An endpoint that is down never holds up the others.

Modules: the Outbox and Backoff in sensornet.outbox, endpoint connections and senders in
sensornet.senders, the spool in sensornet.spool, envelopes and reject reasons in
sensornet.envelope (topics from feather_huzzah.topics), config in sensornet.bridge_config.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from . import spool
from .bridge_config import BridgeConfig, ConfigError, load_config
from .envelope import SUBSCRIPTIONS, RejectedMessage, parse_message
from .outbox import Backoff, BridgeStats, Outbox
from .senders import EndpointSender

log = logging.getLogger("sensornet.bridge")


def _not_paho_noise(record: logging.LogRecord) -> bool:
    # paho 2.2 logs this at ERROR from its network loop once after every disconnect; the
    # bridge logs disconnects itself.
    return not str(record.msg).startswith("Client is not connected")


paho_log = logging.getLogger("sensornet.bridge.paho")
paho_log.addFilter(_not_paho_noise)

BROKER_RECONNECT_MIN_S = 1
BROKER_RECONNECT_MAX_S = 30


class Bridge:
    """The bridge: one MQTT client, one Outbox and EndpointSender per endpoint URL.

    config: BridgeConfig. state_dir: where unsent envelopes are saved on shutdown and read back
    on start (None: not saved; they are logged as lost). drain_timeout: seconds stop() lets
    endpoints take queued envelopes. backoff: () -> Backoff for each endpoint. clock: for the
    envelopes' received_at (sensornet.envelope.utc_now).

    Use `await bridge.run()` (returns after the shutdown), and `await bridge.stop()` from another
    task, or `bridge.request_stop()` from a signal handler; `await bridge.wait_subscribed(timeout)`
    is True once the subscriptions are granted. `stats` holds the counters. One run() per object.
    """

    def __init__(self, config: BridgeConfig, *, state_dir: Path | None = None, drain_timeout: float = 3.0,
                 backoff: Callable[[], Backoff] = Backoff, clock: Callable[[], datetime] | None = None):
        self.config = config
        self.state_dir = Path(state_dir) if state_dir else None
        self.drain_timeout = drain_timeout
        self.stats = BridgeStats()
        self._backoff = backoff
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._senders: list[EndpointSender] = []
        self._tasks: list[asyncio.Task[None]] = []
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
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._stopping, self._senders = False, []
        for url in self.config.endpoints:
            outbox = Outbox(self.config.queue_size)
            self._senders.append(EndpointSender(url, outbox, self.stats, self._backoff()))
        self._load_spool()
        self._tasks = [asyncio.create_task(s.run(), name=f"endpoint {s.url}") for s in self._senders]
        mqtt_conf = self.config.mqtt
        log.info("starting: broker %s:%d as client id %r (user %s), endpoints: %s",
                 mqtt_conf.host, mqtt_conf.port, mqtt_conf.client_id, mqtt_conf.username or "-",
                 ", ".join(self.config.endpoints))
        self._client = self._make_client()
        self._client.connect_async(mqtt_conf.host, mqtt_conf.port, mqtt_conf.keepalive_s)
        self._client.loop_start()
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

    async def _shutdown(self) -> None:
        self._stopping = True  # messages still arriving are not acked: the broker redelivers them
        client = self._client
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        pending = [s for s in self._senders if len(s.outbox)]
        if pending:
            await asyncio.gather(*(s.drain(self.drain_timeout) for s in pending))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._save_spool()
        log.info("stopped: %d received, %d rejected, forwarded %s",
                 self.stats.received, sum(self.stats.rejected.values()),
                 ", ".join(f"{url} {self.stats.forwarded[url]}" for url in self.config.endpoints))

    # ---- MQTT (paho's network thread: never block, hand over to the loop) ----

    def _make_client(self) -> mqtt.Client:
        conf = self.config.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=conf.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if conf.username:
            client.username_pw_set(conf.username, conf.password)
        if conf.ca_file:  # TLS, the broker's certificate checked against this CA (scripts/make-tls.sh)
            client.tls_set(ca_certs=conf.ca_file)
        client.reconnect_delay_set(BROKER_RECONNECT_MIN_S, BROKER_RECONNECT_MAX_S)
        client.enable_logger(paho_log)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
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
        client.subscribe([(f, topics.QOS) for f in SUBSCRIPTIONS])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        conf = self.config.mqtt
        log.warning("broker %s:%d: cannot connect; retrying (up to every %d s)",
                    conf.host, conf.port, BROKER_RECONNECT_MAX_S)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._session += 1
        self._call_in_loop(self._subscribed.clear)
        if not self._stopping:
            conf = self.config.mqtt
            log.warning("broker %s:%d: disconnected (%s); reconnecting", conf.host, conf.port, reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        failed = [f"{topic}: {rc}" for topic, rc in zip(SUBSCRIPTIONS, reason_codes, strict=False) if rc.is_failure]
        if failed:
            log.error("broker refused subscriptions (check broker/acl for user %s): %s",
                      self.config.mqtt.username, "; ".join(failed))
            return
        log.info("subscribed: %s at QoS %d", ", ".join(SUBSCRIPTIONS), topics.QOS)
        self._call_in_loop(self._subscribed.set)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic: str | bytes = message.topic
        except UnicodeDecodeError:
            topic = bytes(getattr(message, "_topic", b""))
        self._call_in_loop(self._handle_message, topic, message.payload, message.retain, message.qos,
                           message.mid, self._session)

    def _call_in_loop(self, callback: Callable[..., object], *args: Any) -> None:
        assert self._loop is not None  # set by run() before the client exists
        with contextlib.suppress(RuntimeError):  # loop closed: the process is exiting; the broker redelivers
            self._loop.call_soon_threadsafe(callback, *args)

    # ---- messages (asyncio loop) ----

    def _handle_message(self, topic: str | bytes, payload: bytes, retain: bool, qos: int, mid: int,
                        session: int) -> None:
        if self._stopping:
            return
        self.stats.received += 1
        try:
            kwargs = {"clock": self._clock} if self._clock else {}
            envelope = parse_message(topic, payload, retain=retain, qos=qos,
                                     max_payload_bytes=self.config.max_payload_bytes, **kwargs)
        except RejectedMessage as e:
            self.stats.rejected[e.reason] += 1
            log.warning("rejected %s on %s: %s", e.reason, e.topic, e.detail)
        else:
            for sender in self._senders:
                self._enqueue(sender, envelope)
        if qos > 0 and session == self._session and self._client is not None:
            self._client.ack(mid, qos)
        # Otherwise the connection it came on is gone; the broker redelivers it (a duplicate).

    def _enqueue(self, sender: EndpointSender, envelope: dict[str, Any]) -> None:
        if sender.outbox.put(envelope):
            self.stats.dropped[sender.url] += 1
            count = self.stats.dropped[sender.url]
            if count == 1 or count % 1000 == 0:
                log.warning("endpoint %s: queue full (%d), dropped the oldest envelope (%d dropped so far)",
                            sender.url, sender.outbox.maxlen, count)

    # ---- saving unsent envelopes across restarts ----

    def _save_spool(self) -> None:
        for sender in self._senders:
            left = sender.outbox.items()
            if not left:
                continue
            if self.state_dir is None:
                log.warning("endpoint %s: %d envelopes not delivered and lost (no state directory)",
                            sender.url, len(left))
                continue
            try:
                path = spool.save(self.state_dir, sender.url, left)
                log.info("endpoint %s: saved %d undelivered envelopes to %s", sender.url, len(left), path)
            except OSError as e:
                log.error("endpoint %s: could not save %d envelopes to %s: %s", sender.url, len(left),
                          spool.spool_path(self.state_dir, sender.url), e)

    def _load_spool(self) -> None:
        if self.state_dir is None:
            return
        for sender in self._senders:
            try:
                envelopes, damaged = spool.load(self.state_dir, sender.url)
            except OSError as e:
                log.error("endpoint %s: cannot read saved envelopes %s: %s", sender.url,
                          spool.spool_path(self.state_dir, sender.url), e)
                continue
            if damaged:
                log.warning("endpoint %s: skipped %d damaged lines of saved envelopes", sender.url, damaged)
            for envelope in envelopes:
                sender.outbox.put(envelope)
            if envelopes or damaged:
                log.info("endpoint %s: loaded %d envelopes saved by the last run", sender.url, len(envelopes))


def configure_logging(level: str = "INFO") -> None:
    """One line per event to stderr: time, level, logger, message (no time under journald, which adds it)."""
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level),
                        format=stamp + "%(levelname)s %(name)s: %(message)s")
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    paho_log.setLevel(quiet)
    logging.getLogger("websockets").setLevel(quiet)


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
    configure_logging(level)
    state_dir = config.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None
    asyncio.run(serve(Bridge(config, state_dir=Path(state_dir) if state_dir else None)))
    return 0
