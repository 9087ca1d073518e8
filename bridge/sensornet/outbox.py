"""The bridge's bookkeeping with no I/O: reconnect Backoff and the counters (BridgeStats).

(The envelopes themselves wait in the durable store, sensornet.store.)
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, field


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


@dataclass
class BridgeStats:
    """Counters, updated on the asyncio loop. Endpoint counters are keyed by endpoint URL.

    received: messages from the broker (redeliveries count again); rejected: reason -> count;
    acknowledged: messages acknowledged to the broker (after they were stored, or rejected);
    delivered: URL -> envelopes the endpoint acknowledged (or, without acks, took on its socket);
    full: times the store was found full (the bridge then held messages unacknowledged).
    """

    received: int = 0
    acknowledged: int = 0
    full: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    delivered: collections.Counter[str] = field(default_factory=collections.Counter)
