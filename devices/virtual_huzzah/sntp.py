"""A small SNTP server (RFC 4330 server side) on a loopback address, for the tests and the demo:
the virtual boards' ntptime asks it the time, so nothing contacts a public time server.

ntptime always asks UDP port 123, so each responder takes its own loopback address
(127.x.y.z, free on Linux without configuration) on port 123; binding port 123 needs root or
CAP_NET_BIND_SERVICE (or a lowered net.ipv4.ip_unprivileged_port_start).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

NTP_PORT = 123
NTP_1970 = 2208988800  # 1970-01-01 in NTP seconds (since 1900-01-01)


def ntp_timestamp(unix: float) -> bytes:
    """64-bit NTP timestamp (seconds since 1900, 32.32 fixed point; wraps in 2036) of a Unix time."""
    t = unix + NTP_1970
    return struct.pack("!II", int(t) & 0xFFFFFFFF, int((t % 1) * 2**32) & 0xFFFFFFFF)


def reply(request: bytes, now: float) -> bytes | None:
    """The server's answer (48 bytes) to a client request (mode 3), or None for anything else:
    stratum 1, reference "LOCL", the client's transmit time as originate, `now` (Unix seconds) as
    receive and transmit time."""
    if len(request) < 48 or request[0] & 0x07 != 3:
        return None
    version = (request[0] >> 3) & 0x07 or 4
    stamp = ntp_timestamp(now)
    return (bytes((version << 3 | 4, 1, request[2], 0xEC)) + b"\0\0\0\0" + b"\0\0\0\0" + b"LOCL" + stamp
            + request[40:48] + stamp + stamp)


class SntpResponder:
    """Answers SNTP requests on `host`:123 from a thread until close(). offset_s is added to the
    host's clock (to tell a time that came from here from the host's own). `requests` counts the
    requests answered. host None: a random free 127.x.y.z. Raises OSError when it cannot bind."""

    def __init__(self, host: str | None = None, offset_s: float = 0.0):
        self.offset_s = offset_s
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.host = host or f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
            try:
                self.sock.bind((self.host, NTP_PORT))
                break
            except OSError:
                if host:
                    self.sock.close()
                    raise
        else:
            self.sock.close()
            raise OSError(f"no free loopback address for an SNTP responder on port {NTP_PORT}")
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"sntp {self.host}")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = reply(data, time.time() + self.offset_s)
            if answer:
                self.sock.sendto(answer, addr)
                self.requests += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> SntpResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
