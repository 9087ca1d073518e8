# Virtual Feather Huzzah: model of `ntptime`, which the ESP8266_GENERIC firmware has frozen in
# (micropython-lib's micropython/net/ntptime; its source is not among what this project can
# fetch, so this model gives its interface and behaviour): `host` (default "pool.ntp.org"),
# `timeout` (s, default 1), time() -> seconds since the port's epoch from one SNTP exchange on
# UDP port 123 (blocking, at most `timeout`), settime() -> sets machine.RTC() (UTC).
# One difference, on purpose: the virtual board reaches only loopback, so a host that is not a
# 127.x.x.x address or "localhost" raises OSError(ENETUNREACH) without any lookup or traffic.
import socket
import struct
from time import gmtime

host = "pool.ntp.org"
timeout = 1
_NTP_1970 = 2208988800  # 1970-01-01 in NTP seconds (since 1900)
_NTP_2000 = 3155673600
_NTP_2024 = 3913056000  # below this, the 32-bit seconds have wrapped (after 2036)
_ENETUNREACH = 101


def time():
    if not (host == "localhost" or host.startswith("127.")):
        raise OSError(_ENETUNREACH)
    query = bytearray(48)
    query[0] = 0x23  # LI 0, version 4, mode 3 (client)
    addr = socket.getaddrinfo(host, 123)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(query, addr)
        msg = s.recv(48)
    finally:
        s.close()
    seconds = struct.unpack("!I", msg[40:44])[0]  # the transmit timestamp's seconds
    if seconds < _NTP_2024:
        seconds += 0x100000000
    return seconds - (_NTP_2000 if gmtime(0)[0] == 2000 else _NTP_1970)


def settime():
    t = time()
    import machine

    tm = gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
