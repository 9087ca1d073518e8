"""Running the bridge as a service: systemd notification and watchdog, and Prometheus metrics.

- systemd (sd_notify(3), through sdnotify): READY=1 once the store is open and the MQTT client
  started (the broker may still be down: the bridge retries by itself), WATCHDOG=1 from the
  asyncio loop's once-a-second tick, so a loop that stops turning is restarted after the unit's
  WatchdogSec=, STATUS= with the counters, STOPPING=1 at shutdown. Without $NOTIFY_SOCKET
  (not under systemd) nothing is sent.
- Prometheus (prometheus-client): http://<addr>:<metrics_port>/metrics, read from the bridge's
  counters at scrape time (names below, all prefixed sensornet_bridge_).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import sdnotify  # type: ignore[import-untyped]  # no type hints (0.3.2)
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .outbox import BridgeStats

if TYPE_CHECKING:
    from .bridge import Bridge


def configure_logging(level: str = "INFO") -> None:
    """One line per event to stderr: time, level, logger, message (no time under journald, which adds it)."""
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level),
                        format=stamp + "%(levelname)s %(name)s: %(message)s")
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    logging.getLogger("sensornet.bridge.paho").setLevel(quiet)
    logging.getLogger("websockets").setLevel(quiet)


class SystemdNotifier:
    """sd_notify messages for a Type=notify unit with WatchdogSec= (no-ops without $NOTIFY_SOCKET).

    tick() sends WATCHDOG=1 at most every half of $WATCHDOG_USEC (and a STATUS= line).
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        usec = env.get("WATCHDOG_USEC", "")
        self.interval_s = int(usec) / 2e6 if usec.isdigit() else None
        self._last = 0.0
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None

    def _send(self, text: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(text)

    def ready(self) -> None:
        self._send("READY=1")

    def tick(self, stats: BridgeStats) -> None:
        now = time.monotonic()
        if self.interval_s is not None and now - self._last >= min(self.interval_s, 1.0) * 0.9:
            self._last = now
            self._send(f"WATCHDOG=1\nSTATUS={stats.received} received, {stats.acknowledged} acknowledged, "
                       f"{sum(stats.rejected.values())} rejected")

    def stopping(self) -> None:
        self._send("STOPPING=1")


class BridgeCollector(Collector):
    """The bridge's counters as Prometheus metrics, read at scrape time."""

    def __init__(self, bridge: Bridge):
        self.bridge = bridge

    def collect(self) -> Iterator[Metric]:
        b, stats, p = self.bridge, self.bridge.stats, "sensornet_bridge_"
        yield CounterMetricFamily(p + "received", "MQTT messages received from the broker (redeliveries too)",
                                  value=stats.received)
        yield CounterMetricFamily(p + "acknowledged", "MQTT messages acknowledged to the broker after storing",
                                  value=stats.acknowledged)
        rejected = CounterMetricFamily(p + "rejected", "MQTT messages rejected, by reason", labels=["reason"])
        for reason, count in sorted(stats.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily(p + "store_full", "times the store was found full (broker not acknowledged)",
                                  value=stats.full)
        store = b.store
        yield GaugeMetricFamily(p + "stored_bytes", "bytes of envelopes in the store",
                                value=store.stored_bytes if store else 0)
        yield GaugeMetricFamily(p + "oldest_unacked_age_seconds",
                                "age of the oldest envelope some endpoint has not acknowledged",
                                value=b.oldest_unacked_age_s)
        delivered = CounterMetricFamily(p + "delivered", "envelopes an endpoint acknowledged", labels=["endpoint"])
        backlog = GaugeMetricFamily(p + "backlog", "envelopes stored and not yet acknowledged by the endpoint",
                                    labels=["endpoint"])
        up = GaugeMetricFamily(p + "endpoint_up", "1 while connected to the endpoint", labels=["endpoint"])
        for sender in b.senders:
            delivered.add_metric([sender.url], stats.delivered[sender.url])
            backlog.add_metric([sender.url], store.backlog(sender.url) if store else 0)
            up.add_metric([sender.url], 1 if sender.connected.is_set() else 0)
        yield delivered
        yield backlog
        yield up


def serve_metrics(bridge: Bridge, port: int, addr: str = "0.0.0.0") -> None:
    """Serve the bridge's metrics on http://addr:port/metrics (a daemon thread). Raises OSError."""
    REGISTRY.register(BridgeCollector(bridge))
    start_http_server(port, addr)
