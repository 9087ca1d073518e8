"""sensornet.endpoint: the reference receiver, over real WebSocket and TCP connections."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect as ws_connect

from sensornet.endpoint import (
    DEFAULT_TCP_PORT,
    DEFAULT_WS_PORT,
    Endpoint,
    Received,
    build_parser,
    format_jsonl,
    format_line,
)
from sensornet.envelope import encode_line, encode_text
from tests.helpers import run_sensornet, start_endpoint, wait_until_async

pytestmark = pytest.mark.timeout(30)

TSL = {"topic": "sensors/huzzah-00a1b2c3/tsl2561", "client_id": "huzzah-00a1b2c3", "kind": "tsl2561",
       "payload": {"lux": 12.3, "broadband": 120, "ir": 30, "gain": 16, "integration_ms": 402, "seq": 1},
       "received_at": "2026-11-21T14:30:00.123Z"}
STATUS = {"topic": "status/huzzah-00a1b2c3", "client_id": "huzzah-00a1b2c3", "kind": "status",
          "payload": "online", "received_at": "2026-11-21T14:30:01.000Z"}
TSL_LINE = ('2026-11-21T14:30:00.123Z {via} sensors/huzzah-00a1b2c3/tsl2561 '
            '{{"lux":12.3,"broadband":120,"ir":30,"gain":16,"integration_ms":402,"seq":1}}')


def test_defaults():
    args = build_parser().parse_args([])
    assert (args.host, args.ws_port, args.tcp_port) == ("0.0.0.0", 8765, 8081)
    assert (DEFAULT_WS_PORT, DEFAULT_TCP_PORT) == (8765, 8081)


def test_output_line_format():
    line = format_line(Received("ws", TSL))
    assert line == TSL_LINE.format(via="ws")
    received_at, via, topic, payload = line.split(None, 3)
    assert (received_at, via, topic, json.loads(payload)) == (TSL["received_at"], "ws", TSL["topic"], TSL["payload"])
    assert format_line(Received("tcp", STATUS)) == '2026-11-21T14:30:01.000Z tcp status/huzzah-00a1b2c3 "online"'


def test_output_stays_one_line_for_any_payload_text():
    env = {**STATUS, "payload": "two\nlines \u2028 caf\u00e9"}
    line = format_line(Received("tcp", env))
    assert "\n" not in line
    assert "\u2028" not in line
    assert line.isascii()
    assert json.loads(line.split(None, 3)[3]) == env["payload"]


def test_jsonl_format_adds_via():
    assert json.loads(format_jsonl(Received("tcp", TSL))) == {**TSL, "via": "tcp"}


def test_websocket_frames_malformed_ones_counted_connection_stays_open():
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0) as ep, ws_connect(ep.ws_url) as ws:
            await ws.send(encode_text(TSL))
            await ws.send("not json")
            await ws.send('{"topic": "status/x"}')
            await ws.send(b"\xff\xfe")
            await ws.send(encode_text(STATUS).encode())  # binary frame with UTF-8 JSON: accepted
            assert await ep.get() == Received("ws", TSL)
            assert await ep.get() == Received("ws", STATUS)
            assert dict(ep.malformed) == {"bad_json": 1, "missing_key": 1, "not_utf8": 1}
    asyncio.run(scenario())


def test_tcp_lines_split_across_writes_malformed_ones_counted_connection_stays_open():
    async def scenario():
        async with Endpoint("127.0.0.1", 0, 0, max_line_bytes=4096) as ep:
            reader, writer = await asyncio.open_connection("127.0.0.1", ep.tcp_port)
            line = encode_line(TSL)
            writer.write(line[:10])
            await writer.drain()
            # the pause is the test, not a synchronisation: the line's two parts reach the endpoint
            # in two reads, which must be joined
            await asyncio.sleep(0.05)
            writer.write(line[10:] + b"[1, 2]\n" + b"x" * 5000 + b"\n" + b"\n" + encode_line(STATUS))
            await writer.drain()
            assert await ep.get() == Received("tcp", TSL)
            assert await ep.get() == Received("tcp", STATUS)
            assert dict(ep.malformed) == {"not_object": 1, "too_long": 1}
            writer.close()
            await writer.wait_closed()
    asyncio.run(scenario())


def test_on_envelope_callback_instead_of_queue():
    async def scenario():
        seen: list[Received] = []
        async with Endpoint("127.0.0.1", 0, 0, on_envelope=seen.append) as ep, ws_connect(ep.ws_url) as ws:
            await ws.send(encode_text(TSL))
            await wait_until_async(lambda: seen, 5, "the callback called")
        assert seen == [Received("ws", TSL)]
        assert ep.received.empty()
    asyncio.run(scenario())


STATUS_LINE = '2026-11-21T14:30:01.000Z ws status/huzzah-00a1b2c3 "online"'


def test_command_prints_one_line_per_envelope_and_survives_malformed_input():
    async def scenario(proc, ws_port, tcp_port):
        async with ws_connect(f"ws://127.0.0.1:{ws_port}") as ws:
            await ws.send(encode_text(TSL))
            assert await asyncio.to_thread(proc.wait_lines, 1) == [TSL_LINE.format(via="ws")]
            await ws.send("{garbage")
            await ws.send(encode_text(STATUS))
            assert (await asyncio.to_thread(proc.wait_lines, 2))[1] == STATUS_LINE
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(b"nonsense\n" + encode_line(TSL))
        await writer.drain()
        assert (await asyncio.to_thread(proc.wait_lines, 3))[2] == TSL_LINE.format(via="tcp")
        writer.close()
        await writer.wait_closed()

    proc, ws_port, tcp_port = start_endpoint()
    try:
        asyncio.run(scenario(proc, ws_port, tcp_port))
        assert proc.stop() == 0  # SIGTERM: a clean stop
    finally:
        proc.stop()
    # one line per good envelope, nothing for the malformed ones, nothing more at the stop
    assert proc.stdout == [TSL_LINE.format(via="ws"), STATUS_LINE, TSL_LINE.format(via="tcp")]


def test_command_jsonl():
    async def scenario(proc, ws_port):
        async with ws_connect(f"ws://127.0.0.1:{ws_port}") as ws:
            await ws.send(encode_text(TSL))
            [line] = await asyncio.to_thread(proc.wait_lines, 1)
            assert json.loads(line) == {**TSL, "via": "ws"}

    proc, ws_port, _ = start_endpoint("--jsonl")
    try:
        asyncio.run(scenario(proc, ws_port))
        assert proc.stop() == 0
    finally:
        proc.stop()
    assert len(proc.stdout) == 1


def test_command_bad_port_exits_2():
    result = run_sensornet("endpoint", "--ws-port", "70000", timeout=30)
    assert result.returncode == 2
    assert "--ws-port" in result.stderr


def test_command_port_in_use_exits_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_sensornet("endpoint", "--host", "127.0.0.1", "--ws-port", "0", "--tcp-port", str(port), timeout=30)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "listening:" not in result.stderr
