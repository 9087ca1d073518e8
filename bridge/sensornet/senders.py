"""Endpoint connections and senders: one EndpointSender task per endpoint sends the store's
envelopes in seq order from the endpoint's cursor, and advances the cursor when the endpoint
acknowledges them (at-least-once).

Wire formats: ws:// and wss://, one envelope per text frame; tcp://HOST:PORT, newline-delimited
JSON, one envelope per line. The bodies come from the store already encoded (ASCII JSON), so
nothing is encoded at send time and nothing can fail to encode there.

Acknowledgements (`sensornet endpoint` sends them): the JSON object {"ack": N}, N the number of
envelopes the endpoint has taken on this connection so far (cumulative; it may skip values),
as a WebSocket text frame or a TCP line. For an endpoint configured without acknowledgements,
an envelope counts as delivered once written to the socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from .outbox import Backoff, BridgeStats
from .store import Store

log = logging.getLogger("sensornet.bridge")

CONNECT_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0
BATCH = 256      # envelopes read from the store and written per round
WINDOW = 2048    # envelopes sent and not yet acknowledged, at most, per connection


def parse_ack(data: str | bytes) -> int:
    """The count N of an acknowledgement {"ack": N}; ValueError for anything else."""
    value = json.loads(data)
    count = value.get("ack") if isinstance(value, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"not an acknowledgement: {data[:80]!r}")
    return count


class _WsConnection:
    """One WebSocket connection: one text frame per envelope; acknowledgements as text frames."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> _WsConnection:
        return cls(await ws_connect(url, open_timeout=CONNECT_TIMEOUT_S, max_size=2 ** 20, compression=None))

    async def send(self, bodies: list[bytes]) -> None:
        # One text frame per envelope (the bodies are ASCII JSON already), all written to the
        # socket in one go: websockets' send_context() is what its send() does per message. Its
        # exit writes the protocol's output one frame per transport.write(), a system call
        # each, so the frames are joined into one write here first.
        ws = self.ws
        async with ws.send_context():
            for body in bodies:
                ws.protocol.send_text(body)
            chunks = ws.protocol.data_to_send()
            if all(chunks):
                ws.transport.write(b"".join(chunks))
            else:  # an end of stream among them (not from text frames): as websockets' send_data() does
                for chunk in chunks:
                    if chunk:
                        ws.transport.write(chunk)
                    elif ws.transport.can_write_eof():
                        ws.transport.write_eof()
                    else:
                        ws.transport.close()

    async def incoming(self) -> AsyncIterator[str | bytes]:
        async for frame in self.ws:
            yield frame

    async def close(self) -> None:
        await self.ws.close()


class _TcpConnection:
    """One TCP connection: newline-delimited JSON out; acknowledgement lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> _TcpConnection:
        parts = urlsplit(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port, limit=2 ** 20), CONNECT_TIMEOUT_S)
        return cls(reader, writer)

    async def send(self, bodies: list[bytes]) -> None:
        if self.reader.at_eof() or self.writer.is_closing():
            raise ConnectionError("closed by the endpoint")
        self.writer.write(b"\n".join(bodies) + b"\n")
        await self.writer.drain()

    async def incoming(self) -> AsyncIterator[str | bytes]:
        while line := await self.reader.readline():
            if line.strip():
                yield line

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Connection(Protocol):
    """What EndpointSender needs from a connection to an endpoint."""

    async def send(self, bodies: list[bytes]) -> None: ...  # returns once written; raises on failure
    def incoming(self) -> AsyncIterator[str | bytes]: ...  # frames/lines from the endpoint; ends when closed
    async def close(self) -> None: ...


async def open_connection(url: str) -> Connection:
    """Open a connection to an endpoint URL (ws://, wss:// or tcp://HOST:PORT).

    Raises OSError, TimeoutError (after CONNECT_TIMEOUT_S) or a websockets InvalidHandshake.
    """
    return await (_TcpConnection if url.startswith("tcp://") else _WsConnection).open(url)


class EndpointSender:
    """Keeps one endpoint connected and sends it the store's envelopes after its cursor, in order.

    acks: the endpoint acknowledges (else written counts as delivered). on_advance: called
    after the cursor moved (the bridge takes in held messages when the store has room again).
    Runs as its own asyncio task (`run()`); never raises except on cancellation. wake() after
    the store got new envelopes.
    """

    def __init__(self, url: str, store: Store, stats: BridgeStats, backoff: Backoff, acks: bool = True,
                 on_advance: Callable[[], None] = lambda: None):
        self.url, self.store, self.stats, self.backoff, self.acks = url, store, stats, backoff, acks
        self.on_advance = on_advance
        self.connected = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._caught_up = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()
        self._caught_up.clear()

    async def run(self) -> None:
        while True:
            conn, delay = None, 0.0
            try:
                conn = await open_connection(self.url)
                log.info("endpoint %s: connected (%d to send)", self.url, self.store.backlog(self.url))
                self.backoff.reset()
                self.connected.set()
                await self._pump(conn)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect later
                delay = self.backoff.next()
                what = "disconnected" if conn else "cannot connect"
                log.warning("endpoint %s: %s (%s); retry in %.1f s, %d to send",
                            self.url, what, _describe(e), delay, self.store.backlog(self.url))
            finally:
                self.connected.clear()
                if conn:
                    await _close_quietly(conn)
            await asyncio.sleep(delay)

    def _advance(self, seq: int, count: int) -> None:
        self.store.advance(self.url, seq)
        self.stats.delivered[self.url] += count
        if self.store.cursors[self.url] >= self.store.last_seq:
            self._caught_up.set()
        self.on_advance()

    async def _pump(self, conn: Connection) -> None:
        inflight: collections.deque[int] = collections.deque()  # seqs sent on this connection, not acked
        room = asyncio.Event()
        reader = asyncio.ensure_future(self._read(conn, inflight, room))
        wakeup = self._wakeup
        # The reader ending (endpoint gone) wakes the waits below, so they need no asyncio.wait().
        def reader_done(_: object) -> None:
            room.set()
            wakeup.set()
        reader.add_done_callback(reader_done)
        store = self.store
        sent_upto = store.cursors[self.url]
        try:
            while True:
                if reader.done():
                    reader.result()
                    raise ConnectionError("closed by the endpoint")
                rows = store.fetch(sent_upto, BATCH) if len(inflight) < WINDOW and store.last_seq > sent_upto else []
                if not rows:
                    waiter = room if len(inflight) >= WINDOW else wakeup
                    waiter.clear()
                    if (waiter is wakeup and store.last_seq > sent_upto) or (waiter is room and len(inflight) < WINDOW):
                        await asyncio.sleep(0)  # it changed meanwhile: look again (never spin without yielding)
                    elif not reader.done():
                        await waiter.wait()
                    continue
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await conn.send([body for _, body in rows])
                sent_upto = rows[-1][0]
                if self.acks:
                    inflight.extend(seq for seq, _ in rows)
                else:
                    self._advance(sent_upto, len(rows))
                if len(rows) == BATCH:
                    await asyncio.sleep(0)  # more waiting: let the loop take in MQTT messages between batches
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _read(self, conn: Connection, inflight: collections.deque[int], room: asyncio.Event) -> None:
        """Take acknowledgements (or, without acks, discard what arrives) until the endpoint closes."""
        acked = 0
        async for data in conn.incoming():
            if not self.acks:
                continue
            try:
                count = parse_ack(data)
            except ValueError as e:
                log.warning("endpoint %s: %s", self.url, e)
                continue
            new = count - acked
            if new <= 0:
                continue
            if new > len(inflight):
                raise ConnectionError(f"acknowledged {count}, only {acked + len(inflight)} sent")
            for _ in range(new - 1):
                inflight.popleft()
            self._advance(inflight.popleft(), new)
            acked = count
            room.set()

    # The timeout is the point of this call (the Bridge's drain_timeout at shutdown).
    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for the endpoint to have everything stored; True when it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.store.cursors[self.url] < self.store.last_seq:
                    self._caught_up.clear()
                    await self._caught_up.wait()
        return bool(self.store.cursors[self.url] >= self.store.last_seq)


async def _close_quietly(conn: Connection) -> None:
    try:
        async with asyncio.timeout(2):
            await conn.close()
    except Exception:  # noqa: BLE001 - already failing; closing is best effort
        pass


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
