# MQTT that never blocks the asyncio loop: umqtt.simple's MQTTClient (frozen in the ESP8266
# firmware) with connect() and publish() as coroutines. The socket is non-blocking; every wait for
# the broker is a select.poll check between asyncio.sleep_ms() calls, against a deadline, so a
# broker that accepts TCP but never answers, a TCP handshake that never completes or a link that
# goes silent raise OSError(ETIMEDOUT) while the LED, Wi-Fi and sensor tasks go on.
#
# umqtt.simple keeps what it does well (its attributes, set_last_will()); its blocking socket
# calls are not used. Not even wait_msg(): after the first byte it switches the socket to blocking,
# so a packet cut short by a dead link would hang the loop. The broker sends this client only
# CONNACK, PUBACK and PINGRESP (it subscribes to nothing): at most 4 bytes each, read here.
# (So umqtt.simple's subscribe(), wait_msg() and check_msg() are not for this client: its
# _send_str() writes into the packet being built, which _send() then writes out.)
import errno
import select
import socket
import time

from micropython import const
from umqtt.simple import MQTTClient, MQTTException

try:
    import asyncio
except ImportError:  # MicroPython 1.19/1.20
    import uasyncio as asyncio

_POLL_MS = const(20)  # between two looks at the socket while waiting for the broker
_CONNACK = const(0x20)
_PUBACK = const(0x40)
_HEAD = b"\0\0\0\0\0"  # room for a fixed header: the type byte and up to 4 length bytes


class Client(MQTTClient):
    """umqtt.simple's MQTTClient, asynchronous, with deadlines.

    timeout_s (number): how long the broker may take to complete the TCP handshake and answer
    CONNECT, and to answer a PUBLISH (PUBACK) or a ping (PINGRESP); for the last two at most half
    the keepalive (int, s; 0: no pings). Use: await connect(); then await publish() and, every
    100 ms or so, await keep(), which reads the broker's packets and pings at half the keepalive.
    Each raises OSError when the link fails (ETIMEDOUT: the broker did not answer in time), and
    connect() MQTTException(return code) when the broker refuses. A failed connect() closes the
    socket; close() it after publish() or keep() fail.
    """

    def __init__(self, client_id, server, port, user, password, keepalive, timeout_s):
        super().__init__(client_id, server, port, user, password, keepalive)
        self.timeout_ms = int(timeout_s * 1000)
        self.reply_ms = min(self.timeout_ms, keepalive * 500) if keepalive else self.timeout_ms
        self.out = bytearray()  # the packet being sent; it keeps its room for the next one
        self.rx = bytearray(4)  # the packet received
        self.poller = select.poll()
        self.sent = 0  # ticks_ms when a packet last went out
        self.pinged = None  # ticks_ms of the PINGREQ not answered yet
        self.addr = None  # the broker's address, once resolved

    def close(self, disconnect=False):
        """Close the connection (with disconnect: say so to the broker first, best effort)."""
        s = self.sock
        if s:
            self.sock = None
            self.poller.unregister(s)
            if disconnect:
                try:
                    s.write(b"\xe0\0")  # DISCONNECT: no last will
                except OSError:
                    pass
            s.close()

    def _send_str(self, s):
        # umqtt.simple's, into self.out: the length in bytes (UTF-8, not characters), the bytes
        o = self.out
        i = len(o)
        o.extend(_HEAD[:2])
        o.extend(s)
        n = len(o) - i - 2
        o[i] = n >> 8
        o[i + 1] = n & 0xFF

    async def _wait(self, mask, deadline):
        p = self.poller
        p.register(self.sock, mask)
        while True:
            await asyncio.sleep_ms(_POLL_MS)
            for _, ev in p.ipoll(0):
                if ev & mask:
                    return
                raise OSError(errno.ECONNRESET)  # an error or hang-up only
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise OSError(errno.ETIMEDOUT)

    async def _send(self, kind, deadline):
        # send the packet built in self.out behind _HEAD: its fixed header goes in front of it
        o = self.out
        n = len(o) - 5
        i = 3 - (n > 127) - (n > 16383) - (n > 2097151)
        o[i] = kind
        for j in range(i + 1, 5):
            o[j] = n & 0x7F | (0x80 if j < 4 else 0)
            n >>= 7
        mv = memoryview(o)[i:]
        while mv:
            n = self.sock.write(mv)
            if not n:  # None: no room in the send buffer
                await self._wait(select.POLLOUT, deadline)
            else:
                mv = mv[n:]
        self.sent = time.ticks_ms()

    async def _recv(self, deadline, idle=False):
        # one packet into self.rx; returns its type byte (idle: None when none has begun to come)
        rx = self.rx
        n = 0
        need = 2
        while n < need:
            k = self.sock.readinto(memoryview(rx)[n:need])
            if k is None:
                if idle and not n:
                    return None
                await self._wait(select.POLLIN, deadline)
            elif k:
                n += k
                if n == 2:
                    if rx[1] > 2:
                        raise OSError(f"unexpected packet 0x{rx[0]:02x}")
                    need = 2 + rx[1]
            else:
                raise OSError(errno.ECONNRESET)  # closed by the broker
        self.pinged = None  # any packet answers a ping
        return rx[0]

    async def connect(self, clean_session=True):
        """Connect (TCP, then MQTT CONNECT/CONNACK) within timeout_s. Returns session present.
        On failure the socket is closed, then the exception raised."""
        self.close()
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        if self.addr is None:  # resolved once per Client: a name blocks (DNS), an IP does not
            self.addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        o = self.out
        o[:] = _HEAD
        o.extend(b"\0\x04MQTT\x04")  # the bytes umqtt.simple's connect() sends
        flags = clean_session << 1
        if self.user is not None:
            flags |= 0xC0
        if self.lw_topic:
            flags |= 0x4 | self.lw_qos << 3 | self.lw_retain << 5
        o.append(flags)
        o.append(self.keepalive >> 8)
        o.append(self.keepalive & 0xFF)
        self._send_str(self.client_id)
        if self.lw_topic:
            self._send_str(self.lw_topic)
            self._send_str(self.lw_msg)
        if self.user is not None:
            self._send_str(self.user)
            self._send_str(self.pswd)
        self.sock = socket.socket()
        try:
            self.sock.setblocking(False)
            try:
                self.sock.connect(self.addr)
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    raise
            await self._wait(select.POLLOUT, deadline)  # the TCP handshake
            await self._send(0x10, deadline)
            if await self._recv(deadline) != _CONNACK:
                raise OSError("no CONNACK")
            if self.rx[3]:
                raise MQTTException(self.rx[3])
        except Exception:
            self.close()
            raise
        return self.rx[2] & 1

    async def publish(self, topic, msg, retain=False, qos=0):
        """Send a PUBLISH (QoS 0 or 1); at QoS 1 return once the broker has acknowledged it."""
        deadline = time.ticks_add(time.ticks_ms(), self.reply_ms)
        o = self.out
        o[:] = _HEAD
        self._send_str(topic)
        if qos:
            self.pid = pid = self.pid % 0xFFFF + 1  # 1-65535; umqtt.simple's goes past 65535
            o.append(pid >> 8)
            o.append(pid & 0xFF)
        o.extend(msg)
        await self._send(0x30 | qos << 1 | retain, deadline)
        while qos:
            if await self._recv(deadline) == _PUBACK and self.rx[2] << 8 | self.rx[3] == pid:
                return

    async def keep(self):
        """Read what the broker sent, ping when nothing went out for half the keepalive. Raises
        OSError(ETIMEDOUT) when a ping had no answer in time: the link is dead."""
        now = time.ticks_ms()
        deadline = time.ticks_add(now, self.reply_ms)
        await self._recv(deadline, True)
        if self.pinged is not None:
            if time.ticks_diff(now, self.pinged) > self.reply_ms:
                raise OSError(errno.ETIMEDOUT)
        elif self.keepalive and time.ticks_diff(now, self.sent) >= self.keepalive * 500:
            self.out[:] = _HEAD
            await self._send(0xC0, deadline)  # PINGREQ
            self.pinged = now
