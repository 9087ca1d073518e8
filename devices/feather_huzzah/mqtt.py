# MQTT that never blocks the asyncio loop: umqtt.simple's MQTTClient (frozen in the ESP8266
# firmware) with connect() and publish() as coroutines. The socket is non-blocking; every wait for
# the broker is a select.poll check between asyncio.sleep_ms() calls, against a deadline, so a
# broker that accepts TCP but never answers, a TCP handshake that never completes or a link that
# goes silent raise OSError(ETIMEDOUT) while the LED, Wi-Fi and sensor tasks go on.
#
# umqtt.simple keeps what it does well (its attributes, set_last_will()); its blocking socket
# calls are not used. Not even wait_msg(): after the first byte it switches the socket to blocking,
# so a packet cut short by a dead link would hang the loop. The broker sends this client CONNACK,
# PUBACK, SUBACK and PINGRESP (at most 5 bytes each) and, on its one subscription (cmd/<client_id>/#,
# QoS 0), PUBLISH: read here, kept in `inbox` while small (remote commands are a few bytes),
# else read through, counted in `dropped_in` and logged. (So umqtt.simple's subscribe(),
# wait_msg() and check_msg() are not for this client: its _send_str() writes into the packet
# being built, which _send() then writes out.)
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
_SUBACK = const(0x90)
_MAX_IN = const(128)  # bytes of an incoming PUBLISH (topic and message) kept; bigger: dropped
_INBOX = const(4)  # incoming PUBLISHes kept until the application takes them
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
        self.rx = bytearray(5)  # the packet received (not a PUBLISH)
        self.rx1 = memoryview(self.rx)[:1]  # its type byte
        self.inbox = []  # (topic, message) (bytes, bytes) of PUBLISHes received, oldest first
        self.dropped_in = 0  # PUBLISHes not kept: too big, or the inbox full
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

    async def _fill(self, mv, deadline):
        # exactly len(mv) bytes into mv
        n = 0
        while n < len(mv):
            k = self.sock.readinto(mv[n:])
            if k is None:
                await self._wait(select.POLLIN, deadline)
            elif k:
                n += k
            else:
                raise OSError(errno.ECONNRESET)  # closed by the broker

    async def _recv(self, deadline, idle=False):
        # one packet; returns its type byte (idle: None when none has begun to come). Packets
        # other than PUBLISH land in self.rx (type, length, up to 3 bytes); a PUBLISH in inbox.
        rx = self.rx
        if idle:
            k = self.sock.readinto(self.rx1)
            if k is None:
                return None
            if not k:
                raise OSError(errno.ECONNRESET)
        else:
            await self._fill(self.rx1, deadline)
        kind = rx[0]
        n = shift = 0
        while True:  # the remaining length: 1-4 bytes, 7 bits each
            await self._fill(memoryview(rx)[1:2], deadline)
            n |= (rx[1] & 0x7F) << shift
            if not rx[1] & 0x80:
                break
            shift += 7
            if shift > 21:
                raise OSError("bad remaining length")
        self.pinged = None  # any packet answers a ping
        if kind & 0xF0 == 0x30:
            await self._publish_in(kind, n, deadline)
        elif n > 3:
            raise OSError(f"unexpected packet 0x{kind:02x}")
        else:
            rx[1] = n
            await self._fill(memoryview(rx)[2:2 + n], deadline)
        return kind

    async def _publish_in(self, kind, n, deadline):
        # a PUBLISH of n bytes after its fixed header (QoS 0: the subscription's). A retained one
        # is dropped too: a command left retained (reboot) would act again at every connect.
        if n > _MAX_IN or len(self.inbox) >= _INBOX or kind & 1:
            left = n
            scrap = bytearray(min(n, 64))
            while left:
                k = min(left, len(scrap))
                await self._fill(memoryview(scrap)[:k], deadline)
                left -= k
            self.dropped_in += 1
            print(f"mqtt: incoming {'retained ' if kind & 1 else ''}message of {n} bytes dropped "
                  f"({self.dropped_in} so far)")
            return
        body = bytearray(n)
        await self._fill(memoryview(body), deadline)
        t = body[0] << 8 | body[1]
        skip = 2 + t + (2 if kind & 0x06 else 0)  # a packet id only at QoS 1 or 2
        self.inbox.append((bytes(body[2:2 + t]), bytes(body[skip:])))

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

    async def subscribe(self, topic):
        """Subscribe to `topic` (str, a filter) at QoS 0; return the SUBACK's return code (int:
        0, or 0x80 refused). Raises OSError when the broker does not answer in time."""
        deadline = time.ticks_add(time.ticks_ms(), self.reply_ms)
        o = self.out
        o[:] = _HEAD
        self.pid = pid = self.pid % 0xFFFF + 1
        o.append(pid >> 8)
        o.append(pid & 0xFF)
        self._send_str(topic)
        o.append(0)
        await self._send(0x82, deadline)
        while True:
            if await self._recv(deadline) == _SUBACK and self.rx[2] << 8 | self.rx[3] == pid:
                return self.rx[4]

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
