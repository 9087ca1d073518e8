"""Brokers and links that misbehave, for the firmware's resilience tests: a listener that accepts
TCP and never answers, a port whose TCP handshakes never complete, and a proxy to the real broker
that can go silent. Every socket is on 127.0.0.1; each stops by itself when closed.
"""

from __future__ import annotations

import bisect
import contextlib
import select
import socket
import threading
import time


class SilentBroker:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (no CONNACK).

    accepted, closed: unix times (s) a connection was accepted, and closed by its client.
    """

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[float] = []
        self.closed: list[float] = []
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted.append(time.time())
            self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass
            self.closed.append(time.time())

    def close(self):
        self.server.close()
        for c in self._conns:
            c.close()


@contextlib.contextmanager
def full_backlog_port():
    """A port on 127.0.0.1 where TCP handshakes never complete: a socket that listens with a
    backlog of 0, never accepts, and whose accept queue the test fills; Linux then drops SYNs."""
    server = socket.socket()
    fillers = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers.append(socket.create_connection(("127.0.0.1", port), timeout=5))  # fills the queue
        for _ in range(2):  # these stay in SYN_SENT, as the board's will
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        # the precondition, checked: no handshake completes within 1 s (this wait is the check)
        _, writable, _ = select.select([], fillers[1:], [], 1.0)
        assert not writable, "the accept queue is not full: a handshake completed"
        yield port
    finally:
        for s in fillers:
            s.close()
        server.close()


def mqtt_packets(chunks):
    """The MQTT packets in a byte stream received in `chunks` [(unix time, bytes)]:
    [(time the chunk with its first byte came, first byte, body bytes)], complete ones only."""
    stream = b"".join(data for _, data in chunks)
    ends = []
    for _, data in chunks:
        ends.append((ends[-1] if ends else 0) + len(data))
    out, i = [], 0
    while i + 2 <= len(stream):
        n, shift, j = 0, 0, i + 1
        while j < len(stream):
            n |= (stream[j] & 0x7F) << shift
            shift += 7
            j += 1
            if not stream[j - 1] & 0x80:
                break
        else:
            break
        if j + n > len(stream):
            break
        out.append((chunks[bisect.bisect_right(ends, i)][0], stream[i], stream[j:j + n]))
        i = j + n
    return out


def publish_topic(body):
    return body[2:2 + (body[0] << 8 | body[1])].decode()


class Proxy:
    """A TCP proxy on 127.0.0.1 to the broker. With `forwarding` False it drops everything it
    receives, both ways, and keeps the connections open: the link goes silent.

    links: one per accepted connection, {"up": [(time, bytes)] from the board, "down": [...] to it}.
    """

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.forwarding = True
        self.links: list[dict[str, list[tuple[float, bytes]]]] = []
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                board, _ = self.server.accept()
                broker = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                return
            broker.settimeout(None)
            link = {"up": [], "down": []}
            self.links.append(link)
            self._socks += [board, broker]
            for src, dst, log in ((board, broker, link["up"]), (broker, board, link["down"])):
                threading.Thread(target=self._pump, args=(src, dst, log), daemon=True).start()

    def _pump(self, src, dst, log):
        with contextlib.suppress(OSError):
            while data := src.recv(4096):
                log.append((time.time(), data))
                if self.forwarding:
                    dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def sent_by_board(self, kind, link=None):
        """(time, body) of the packets of type `kind` (high nibble) the board sent, on every link
        or on links[link]."""
        links = self.links if link is None else [self.links[link]]
        return [(t, body) for lk in links for t, first, body in mqtt_packets(list(lk["up"])) if first & 0xF0 == kind]

    def close(self):
        self.server.close()
        for s in self._socks:
            s.close()


