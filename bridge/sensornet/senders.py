"""Endpoint connections and senders: one EndpointSender task keeps one endpoint connected and
sends its Outbox in order, at-least-once.

Wire formats: ws:// and wss://, one envelope per text frame; tcp://HOST:PORT, newline-delimited
JSON (sensornet.envelope's encode_text and encode_line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from .envelope import encode_line, encode_text
from .outbox import Backoff, BridgeStats, Outbox

log = logging.getLogger("sensornet.bridge")

CONNECT_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0


class _WsConnection:
    """One WebSocket connection: one text frame per envelope."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> _WsConnection:
        return cls(await ws_connect(url, open_timeout=CONNECT_TIMEOUT_S, max_size=2 ** 20))

    async def send(self, envelope: dict[str, Any]) -> None:
        await self.ws.send(encode_text(envelope))

    async def wait_closed(self) -> None:
        await self.ws.wait_closed()

    async def close(self) -> None:
        await self.ws.close()


class _TcpConnection:
    """One TCP connection: newline-delimited JSON, one line per envelope.

    Anything the endpoint sends is discarded; its end of stream (FIN) marks the connection
    closed, so the next envelope is not written into a connection the endpoint already left.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> _TcpConnection:
        parts = urlsplit(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), CONNECT_TIMEOUT_S)
        return cls(reader, writer)

    async def send(self, envelope: dict[str, Any]) -> None:
        if self.reader.at_eof() or self.writer.is_closing():
            raise ConnectionError("closed by the endpoint")
        self.writer.write(encode_line(envelope))
        await self.writer.drain()

    async def wait_closed(self) -> None:
        while await self.reader.read(65536):
            pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Connection(Protocol):
    """What EndpointSender needs from a connection to an endpoint."""

    async def send(self, envelope: dict[str, Any]) -> None: ...  # returns once written; raises on failure
    async def wait_closed(self) -> None: ...  # returns (or raises) when the endpoint closed it
    async def close(self) -> None: ...


async def open_connection(url: str) -> Connection:
    """Open a connection to an endpoint URL (ws://, wss:// or tcp://HOST:PORT).

    Raises OSError, TimeoutError (after CONNECT_TIMEOUT_S) or a websockets InvalidHandshake.
    """
    return await (_TcpConnection if url.startswith("tcp://") else _WsConnection).open(url)


class EndpointSender:
    """Keeps one endpoint connected and sends its Outbox in order, at-least-once.

    Runs as its own asyncio task (`run()`); never raises except on cancellation.
    """

    def __init__(self, url: str, outbox: Outbox, stats: BridgeStats, backoff: Backoff):
        self.url, self.outbox, self.stats, self.backoff = url, outbox, stats, backoff
        self.connected = asyncio.Event()

    async def run(self) -> None:
        while True:
            conn, delay = None, 0.0
            try:
                conn = await open_connection(self.url)
                log.info("endpoint %s: connected (%d queued)", self.url, len(self.outbox))
                self.backoff.reset()
                self.connected.set()
                await self._pump(conn)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect later
                delay = self.backoff.next()
                what = "disconnected" if conn else "cannot connect"
                log.warning("endpoint %s: %s (%s); retry in %.1f s, %d queued",
                            self.url, what, _describe(e), delay, len(self.outbox))
            finally:
                self.connected.clear()
                if conn:
                    await _close_quietly(conn)
            await asyncio.sleep(delay)

    async def _pump(self, conn: Connection) -> None:
        closed = asyncio.ensure_future(conn.wait_closed())
        try:
            while True:
                if self.outbox.peek() is None:
                    head = asyncio.ensure_future(self.outbox.head())
                    await asyncio.wait([head, closed], return_when=asyncio.FIRST_COMPLETED)
                    head.cancel()
                if closed.done():
                    raise ConnectionError("closed by the endpoint")
                item = self.outbox.peek()
                assert item is not None  # head() returned, and only this task removes items
                seq, envelope = item
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await conn.send(envelope)
                self.outbox.remove(seq)
                self.stats.forwarded[self.url] += 1
                await asyncio.sleep(0)  # let the loop take in MQTT messages between sends
        finally:
            closed.cancel()
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved: the reason is logged by run()

    # The timeout is the point of this call (the Bridge's drain_timeout at shutdown).
    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for the Outbox to empty; True when it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.outbox.wait_empty()
        return not len(self.outbox)


async def _close_quietly(conn: Connection) -> None:
    try:
        async with asyncio.timeout(2):
            await conn.close()
    except Exception:  # noqa: BLE001 - already failing; closing is best effort
        pass


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
