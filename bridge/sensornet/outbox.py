"""Per-endpoint queueing for the bridge, with no I/O: the Outbox, reconnect Backoff and counters.

Pure bookkeeping on the asyncio loop (only Outbox.head() and Outbox.wait_empty() await, for an
item to arrive or the last to leave), so it is tested with plain values.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Backoff:
    """Reconnect delays: exponential from `initial` seconds, doubling up to `cap`, with jitter.

    next() -> seconds to wait: min(cap, initial * 2**attempt) times a random factor in
    [0.5, 1.0) ("equal jitter"), so many bridges restarted together do not reconnect in step.
    reset() after a successful connection. rng: () -> float in [0, 1) (random.random).
    """

    def __init__(self, initial: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random):
        self.initial, self.cap, self.rng = initial, cap, rng
        self.attempt = 0

    def next(self) -> float:
        base: float = min(self.cap, self.initial * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return base * (0.5 + self.rng() / 2)

    def reset(self) -> None:
        self.attempt = 0


class Outbox:
    """A bounded FIFO of envelopes for one endpoint.

    put(item) appends and returns True when the queue was full and its oldest item was dropped.
    head() waits for and returns (sequence number, item) of the oldest item without removing
    it; remove(seq) removes it once sent (a no-op when an overflow already dropped it).
    wait_empty() returns once the last item has been removed.
    """

    def __init__(self, maxlen: int):
        self.maxlen = maxlen
        self._items: collections.deque[tuple[int, Any]] = collections.deque()
        self._next_seq = 0
        self._nonempty = asyncio.Event()
        self._empty = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> bool:
        dropped = len(self._items) >= self.maxlen
        if dropped:
            self._items.popleft()
        self._items.append((self._next_seq, item))
        self._next_seq += 1
        self._nonempty.set()
        return dropped

    def peek(self) -> tuple[int, Any] | None:
        return self._items[0] if self._items else None

    async def head(self) -> tuple[int, Any]:
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()
        return self._items[0]

    async def wait_empty(self) -> None:
        while self._items:
            self._empty.clear()
            await self._empty.wait()

    def remove(self, seq: int) -> None:
        if self._items and self._items[0][0] == seq:
            self._items.popleft()
            if not self._items:
                self._empty.set()

    def items(self) -> list[Any]:
        return [item for _, item in self._items]


@dataclass
class BridgeStats:
    """Counters, updated on the asyncio loop. Endpoint counters are keyed by endpoint URL.

    received: messages from the broker (redeliveries count again); rejected: reason -> count;
    forwarded: envelopes send() accepted; dropped: envelopes lost to queue overflow.
    """

    received: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    forwarded: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
