"""The bridge's inbox: messages from paho, taken in batches into the store, then acknowledged.

paho's on_message (on the asyncio loop) hands each message to `Inbox.add`, which schedules one
`take` for everything that arrives until it runs (everything from one read of the socket). `take`
parses the batch (one received_at for all of it), commits the envelopes to the store in one
transaction and only then acknowledges the batch (the bridge's `ack`, which sends a PUBACK only
on the connection a message came on). A rejected message is counted, logged and acknowledged
with its batch. While the store is full nothing is taken and nothing acknowledged, until an
endpoint's cursor advances (`room_made`); a failed write puts the batch back and retries.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime

from .envelope import RejectedMessage, format_timestamp, parse_message_text
from .outbox import BridgeStats
from .store import Store

log = logging.getLogger("sensornet.bridge")

STORE_RETRY_S = 1.0

Message = tuple[str | bytes, bytes, bool, int, int, int]
"""(topic, payload, retain, qos, mid, connection number) as the bridge's on_message takes it."""


class Inbox:
    """Messages waiting for the store, taken in batches on the running asyncio loop.

    store, stats: the bridge's. max_payload_bytes: parse_message_text's limit. clock: for
    received_at. ack(batch) -> number acknowledged: called only after the batch's envelopes are
    committed. on_stored(): called after a batch stored at least one envelope (wake the senders).
    Build it on the loop it runs on.
    """

    def __init__(self, store: Store, stats: BridgeStats, *, max_payload_bytes: int,
                 clock: Callable[[], datetime], ack: Callable[[list[Message]], int],
                 on_stored: Callable[[], None]):
        self.store = store
        self.stats = stats
        self._max_payload_bytes = max_payload_bytes
        self._clock = clock
        self._ack = ack
        self._on_stored = on_stored
        self._loop = asyncio.get_running_loop()
        self._messages: collections.deque[Message] = collections.deque()
        self._scheduled = False  # a take() call is pending on the loop
        self._was_full = False
        self._closed = False

    def add(self, message: Message) -> None:
        """Queue one message (paho's on_message); a take() follows on the loop."""
        if self._closed:  # not acknowledged: the broker redelivers it
            return
        self._messages.append(message)
        if not self._scheduled:  # one call for everything that arrives until it runs
            self._scheduled = True
            self._loop.call_soon(self.take)

    def close(self) -> None:
        """Take nothing more and drop what waits: none of it was acknowledged."""
        self._closed = True
        self._messages.clear()

    def room_made(self) -> None:
        """An endpoint's cursor advanced: take in what waited while the store was full."""
        if self._messages and not self._scheduled and not self.store.full:
            self._scheduled = True
            self._loop.call_soon(self.take)

    def take(self) -> None:
        """Store everything waiting as one batch, then acknowledge it (nothing while the store is full)."""
        self._scheduled = False  # first: a message added from now on schedules another call
        store = self.store
        if self._closed:
            return
        if store.full:
            if not self._was_full:
                self._was_full = True
                self.stats.full += 1
                log.warning("store full (%d of %d bytes): not acknowledging the broker until endpoints catch up "
                            "(%s)", store.stored_bytes, store.max_bytes,
                            ", ".join(f"{url} {store.backlog(url)} behind" for url in store.cursors))
            return
        if self._was_full:
            self._was_full = False
            log.info("store has room again (%d bytes): taking messages from the broker", store.stored_bytes)
        batch = list(self._messages)
        self._messages.clear()  # (add runs on this loop too: nothing arrived in between)
        bodies: list[bytes] = []
        rejected: list[RejectedMessage] = []  # counted once the batch is stored: a retried batch is parsed again
        max_bytes = self._max_payload_bytes
        received_at = format_timestamp(self._clock())  # one time for the batch: it arrived together
        self.stats.received += len(batch)
        for topic, payload, retain, qos, _mid, _session in batch:
            try:
                _envelope, text = parse_message_text(topic, payload, retain=retain, qos=qos,
                                                     max_payload_bytes=max_bytes, received_at=received_at)
            except RejectedMessage as e:
                rejected.append(e)
                continue
            bodies.append(text.encode("ascii"))
        try:
            store.append(bodies)
        except sqlite3.Error as e:
            self.stats.received -= len(batch)
            self._messages.extendleft(reversed(batch))
            log.error("store %s: cannot write (%s); not acknowledging, retrying in %.0f s", store.path, e,
                      STORE_RETRY_S)
            self._loop.call_later(STORE_RETRY_S, self.take)
            self._scheduled = True
            return
        for reject in rejected:
            self.stats.rejected[reject.reason] += 1
            log.warning("rejected %s on %s: %s", reject.reason, reject.topic, reject.detail)
        self.stats.acknowledged += self._ack(batch)
        if bodies:
            self._on_stored()
