"""Run a paho MQTT client on the asyncio loop instead of paho's own network thread.

This is paho's documented external-loop API (paho's examples/loop_asyncio.py; aiomqtt does the
same): the loop watches the client's socket with add_reader/add_writer, switched by paho's
on_socket_open/close/register_write/unregister_write callbacks, and calls loop_read() and
loop_write(); loop_misc() runs once a second for the keepalive. Every paho callback
(on_connect, on_message, ...) therefore runs on the loop: no thread hand-off, no locks.

Connecting (DNS lookup, TCP connect, TLS handshake: all blocking) runs in a worker thread;
`MqttLoop.run()` connects, and reconnects after a lost connection or a failed attempt with a
Backoff (exponential with jitter). The client must be an `MqttClient`, whose socket is a
`BufferedSocket`: paho reads each packet with three recv() calls (type, length, the rest), so
the socket is read 64 KiB at a time and loop_read() is called until that buffer is used up:
a burst of messages costs one system call and reaches on_message in one loop callback. Writes
are gathered the same way: everything one loop_write() call sends (say, the PUBACKs of a whole
batch) goes out in one send(). (paho still parses and builds every packet; nothing here knows
the MQTT wire format.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from .outbox import Backoff

READ_SIZE = 64 * 1024


class BufferedSocket:
    """A connected socket (plain or TLS) whose recv() is served from 64 KiB reads and whose
    send() only appends to an output buffer that flush() writes.

    `buffered` is true while bytes read from the socket are still waiting for paho. close()
    flushes what it can first (paho closes right after writing a DISCONNECT). Everything else
    (fileno, setblocking, ...) goes to the socket itself.
    """

    def __init__(self, sock: Any):
        self.sock = sock
        self._data = b""
        self._pos = 0
        self._out = bytearray()

    @property
    def buffered(self) -> bool:
        return self._pos < len(self._data)

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._data):
            data = self.sock.recv(max(size, READ_SIZE))  # BlockingIOError (or SSLWantRead) when none
            if len(data) <= size:
                return bytes(data)
            self._data, self._pos = data, 0
        chunk = self._data[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk

    def send(self, buffer: bytes | bytearray) -> int:
        self._out += buffer
        return len(buffer)

    def flush(self) -> bool:
        """Write the output buffer; True once it is empty, False when the socket takes no more now.

        A failed connection is shut down, so that paho's next loop_read() finds it lost.
        """
        try:
            while self._out:
                del self._out[:self.sock.send(self._out)]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False
        except OSError:
            self._out.clear()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        return True

    def close(self) -> None:
        self.flush()
        self.sock.close()

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class MqttClient(mqtt.Client):
    """paho's Client with its socket wrapped in a BufferedSocket (see the module docstring)."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())


class MqttLoop:
    """Drives `client` (an MqttClient, connect_async() already called) from the running loop.

    backoff: the delays between connection attempts (reset once a connection was accepted).
    on_connect_fail(error): called after each failed attempt. Run `await mqtt_loop.run()` as a
    task; `await mqtt_loop.disconnect(timeout)` to stop (it ends run()).
    """

    def __init__(self, client: MqttClient, backoff: Backoff, on_connect_fail: Callable[[BaseException], None]):
        self.client, self.backoff, self.on_connect_fail = client, backoff, on_connect_fail
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._sock: Any = None
        self._closed = asyncio.Event()
        self._stopping = False
        self._connecting: asyncio.Future[Any] | None = None
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    async def run(self) -> None:
        """Connect, keep the connection (keepalive), reconnect when it is lost; until disconnect()."""
        while not self._stopping:
            self._closed.clear()
            self._connecting = self._loop.run_in_executor(None, self.client.reconnect)
            try:
                await asyncio.shield(self._connecting)
            except Exception as e:  # noqa: BLE001 - OSError mostly (refused, DNS, TLS); any: retry later
                if self._stopping:
                    return
                self.on_connect_fail(e)
                await asyncio.sleep(self.backoff.next())
                continue
            finally:
                self._connecting = None
            self._take_over()
            if self._sock is None or self._stopping:
                continue
            while not self._closed.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._closed.wait()
                if self.client.is_connected():
                    self.backoff.reset()
                self.client.loop_misc()
            if not self._stopping:
                await asyncio.sleep(self.backoff.next())

    async def disconnect(self, timeout: float) -> None:  # noqa: ASYNC109 - a bounded goodbye
        """Send DISCONNECT and wait up to `timeout` seconds for the socket to close; run() then ends."""
        self._stopping = True
        if self._connecting is not None:
            with contextlib.suppress(Exception):
                await self._connecting
        self._take_over()
        if self.client.disconnect() != mqtt.MQTT_ERR_SUCCESS:
            self._closed.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._closed.wait()
        if self._sock is not None:  # the DISCONNECT could not be written in time
            self._on_socket_close(self.client, None, self._sock)
            self._sock.close()

    def _take_over(self) -> None:
        """Watch the socket a connection attempt opened (its callbacks ran in the worker thread)."""
        sock = self.client.socket()
        if sock is not None and sock is not self._sock:
            self._watch(sock)
            self._loop.add_writer(sock, self._writable)  # the CONNECT (loop_write() unregisters when done)

    def _watch(self, sock: Any) -> None:
        self._sock = sock
        self._loop.add_reader(sock, self._readable)

    def _readable(self) -> None:
        sock: Any = self._sock
        client = self.client
        while True:
            client.loop_read()
            if self._sock is not sock or not sock.buffered:  # closed, or everything read was handled
                return

    def _writable(self) -> None:
        sock = self._sock
        self.client.loop_write()
        if sock is not None and sock is self._sock and not sock.flush():
            self._loop.add_writer(sock, self._writable)  # paho has written its part; the rest waits here

    # paho's socket callbacks: from the loop, or from the worker thread while connecting (ignored
    # there; run() takes over the new socket once the attempt has returned).

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._thread:
            self._watch(sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._thread and sock is self._sock:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            self._sock = None
            self._closed.set()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._thread and sock is self._sock:
            self._loop.add_writer(sock, self._writable)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._thread and sock is self._sock:
            self._loop.remove_writer(sock)
