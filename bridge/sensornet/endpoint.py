"""`sensornet endpoint`: the reference receiver for what the bridge forwards.

One asyncio process listening on
  - WebSocket (default port 8765): one envelope per text frame (binary frames holding UTF-8
    JSON are accepted too);
  - TCP (default port 8081): newline-delimited JSON, one envelope per line.
The envelope format is in sensornet.envelope. For each envelope the command prints one line to
stdout, flushed:

    <received_at> <via> <topic> <payload as compact JSON>
    2026-11-21T14:30:00.123Z ws sensors/huzzah-00a1b2c3/tsl2561 {"lux":12.3,"broadband":120,...}

via is "ws" or "tcp". The first three fields never contain whitespace (decode_envelope checks),
so `line.split(None, 3)` gives the four fields. With --jsonl it prints the envelope as compact
JSON with an added "via" key instead.

Acknowledgements (what lets the bridge advance its cursor, sensornet.senders): after taking
envelopes the endpoint answers {"ack": N}, N the number of frames (WebSocket, as a text frame)
or lines (TCP, as a line) received on this connection so far, malformed ones included;
cumulative: over WebSocket at most one per ACK_DELAY_S (5 ms), over TCP one per read. An
envelope is acknowledged only after it was printed (and stdout flushed) or queued.

Malformed frames or lines are counted and logged to stderr; the connection stays open. Once
both servers listen it prints to stderr
`listening: ws://HOST:PORT tcp://HOST:PORT`.

Library use (tests, demos): `Endpoint(host, ws_port=0, tcp_port=0)` picks free ports;
`await endpoint.start()`, then `endpoint.ws_url` / `endpoint.tcp_url`, `await endpoint.get()`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .envelope import encode_json
from .receive import DEFAULT_MAX_LINE_BYTES, LineSplitter, MalformedEnvelope, decode_envelope

log = logging.getLogger("sensornet.endpoint")

DEFAULT_HOST = "0.0.0.0"
DEFAULT_WS_PORT = 8765
DEFAULT_TCP_PORT = 8081
ACK_DELAY_S = 0.005
"""How long a WebSocket acknowledgement waits for more frames to cover (seconds)."""


class Received(NamedTuple):
    """One envelope as received: via ("ws" or "tcp") and the envelope dict."""

    via: str
    envelope: dict[str, Any]


def format_line(received: Received) -> str:
    """The default output line (no newline): `<received_at> <via> <topic> <payload JSON>`.

    The payload is compact, ASCII-only JSON, so the line is one line whatever the payload.
    """
    env = received.envelope
    return f"{env['received_at']} {received.via} {env['topic']} {encode_json(env['payload'])}"


def format_jsonl(received: Received) -> str:
    """The --jsonl output line (no newline): the envelope's JSON with an added "via" key."""
    return encode_json({**received.envelope, "via": received.via})


class Endpoint:
    """WebSocket and TCP servers that accept envelopes.

    host: address to listen on; ws_port, tcp_port: ports (0 = any free port; the bound ports
    are in .ws_port/.tcp_port after start()). on_envelope: called with each Received on the
    loop; when None, envelopes go to the asyncio.Queue `received` (read with get()).
    `malformed` counts rejected frames/lines by MalformedEnvelope.reason (plus "too_long").
    Use `async with Endpoint(...) as ep:` or start()/stop().
    """

    def __init__(self, host: str = DEFAULT_HOST, ws_port: int = DEFAULT_WS_PORT, tcp_port: int = DEFAULT_TCP_PORT,
                 on_envelope: Callable[[Received], None] | None = None,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self.host, self.ws_port, self.tcp_port = host, ws_port, tcp_port
        self.on_envelope = on_envelope
        self.max_line_bytes = max_line_bytes
        self.received: asyncio.Queue[Received] = asyncio.Queue()
        self.malformed: collections.Counter[str] = collections.Counter()
        self._ws_server: Server | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()

    @property
    def ws_url(self) -> str:
        return f"ws://{self._connect_host}:{self.ws_port}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://{self._connect_host}:{self.tcp_port}"

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    async def start(self) -> Endpoint:
        """Listen on both ports; raises OSError (e.g. address in use) and then listens on neither."""
        ws_server = await serve(self._ws_handler, self.host, self.ws_port, max_size=self.max_line_bytes)
        self._ws_server = ws_server
        try:
            tcp_server = await asyncio.start_server(self._tcp_handler, self.host, self.tcp_port)
        except OSError:
            ws_server.close()
            await ws_server.wait_closed()
            raise
        self._tcp_server = tcp_server
        self.ws_port = ws_server.sockets[0].getsockname()[1]
        self.tcp_port = tcp_server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close both servers and every open connection."""
        if self._tcp_server is not None:
            self._tcp_server.close()
            for writer in list(self._tcp_writers):
                writer.close()
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None

    # The timeout parameter is this public API's (tests, demos): `await endpoint.get(30)`.
    async def get(self, timeout: float = 5.0) -> Received:  # noqa: ASYNC109
        """The next Received from `received`; raises TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            return await self.received.get()

    async def __aenter__(self) -> Endpoint:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _accept(self, via: str, data: str | bytes, peer: Any) -> None:
        try:
            envelope = decode_envelope(data)
        except MalformedEnvelope as e:
            self._malformed(via, peer, e.reason, e.detail)
            return
        received = Received(via, envelope)
        if self.on_envelope is None:
            self.received.put_nowait(received)
        else:
            self.on_envelope(received)

    def _malformed(self, via: str, peer: Any, reason: str, detail: str) -> None:
        self.malformed[reason] += 1
        log.warning("%s %s: malformed %s (%s); %d malformed so far",
                    via, _peer(peer), reason, detail, sum(self.malformed.values()))

    async def _ws_handler(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        log.info("ws %s: connected", _peer(peer))
        taken = [0]
        pending = asyncio.Event()
        acker = asyncio.create_task(self._ws_acks(ws, taken, pending))
        try:
            async for frame in ws:
                self._accept("ws", frame, peer)
                taken[0] += 1
                pending.set()
        except ConnectionClosed:
            pass
        finally:
            acker.cancel()
        log.info("ws %s: disconnected", _peer(peer))

    @staticmethod
    async def _ws_acks(ws: ServerConnection, taken: list[int], pending: asyncio.Event) -> None:
        """Acknowledge on `ws` what its handler took: one frame for all taken since the last one."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await pending.wait()
                await asyncio.sleep(ACK_DELAY_S)  # one acknowledgement for the frames of the next moment
                pending.clear()
                await ws.send(_ack(taken[0]))

    async def _tcp_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log.info("tcp %s: connected", _peer(peer))
        self._tcp_writers.add(writer)
        splitter = LineSplitter(self.max_line_bytes)
        taken = 0
        try:
            while data := await reader.read(65536):
                events = splitter.feed(data)
                for event, value in events:
                    if event == "line":
                        self._accept("tcp", value, peer)
                    else:
                        self._malformed("tcp", peer, "too_long", f"{value} bytes without a newline")
                if events:
                    taken += len(events)
                    writer.write(_ack(taken).encode("ascii") + b"\n")
        except OSError as e:
            log.info("tcp %s: %s", _peer(peer), e)
        finally:
            self._tcp_writers.discard(writer)
            writer.close()
        log.info("tcp %s: disconnected", _peer(peer))


def _ack(count: int) -> str:
    return f'{{"ack":{count}}}'


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0..65535; 0 picks a free port)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensornet endpoint",
        description="Reference receiver: accept envelopes from `sensornet bridge` over WebSocket and TCP and "
                    "print one line per envelope: <received_at> <via> <topic> <payload JSON>.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--ws-port", type=_port, default=DEFAULT_WS_PORT, help="WebSocket port (default 8765)")
    parser.add_argument("--tcp-port", type=_port, default=DEFAULT_TCP_PORT,
                        help="TCP port, newline-delimited JSON (default 8081)")
    parser.add_argument("--jsonl", action="store_true", help="print each envelope as JSON with a \"via\" key")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="stderr log level (default INFO)")
    return parser


async def serve_forever(endpoint: Endpoint, stop: asyncio.Event | None = None) -> int:
    """Start `endpoint`, announce it on stderr, run until SIGTERM/SIGINT or `stop` is set.

    Returns the exit status: 0, or 1 when it cannot listen (message on stderr).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await endpoint.start()
    except OSError as e:
        print(f"sensornet endpoint: cannot listen on {endpoint.host} (ws {endpoint.ws_port}, "
              f"tcp {endpoint.tcp_port}): {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"listening: ws://{endpoint.host}:{endpoint.ws_port} tcp://{endpoint.host}:{endpoint.tcp_port}",
          file=sys.stderr, flush=True)
    await stop.wait()
    await endpoint.stop()
    return 0


def make_printer(formatter: Callable[[Received], str], stop: Callable[[], None]) -> Callable[[Received], None]:
    """An on_envelope callback printing formatter(received) to stdout, flushed; calls stop() if stdout closed."""
    def print_line(received: Received) -> None:
        try:
            sys.stdout.write(formatter(received) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            stop()
    return print_line


def main(argv: list[str] | None = None) -> int:
    """`sensornet endpoint [flags]`: 0 after SIGTERM/SIGINT, 1 if it cannot listen, 2 for bad flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # the endpoint logs connects itself: one line per event
        logging.getLogger("websockets").setLevel(logging.WARNING)
    formatter = format_jsonl if args.jsonl else format_line

    async def run() -> int:
        stop = asyncio.Event()
        endpoint = Endpoint(args.host, args.ws_port, args.tcp_port, on_envelope=make_printer(formatter, stop.set))
        return await serve_forever(endpoint, stop)

    return asyncio.run(run())
