# Virtual Feather Huzzah: model of the esp8266 port's `network` module (a C module on the board).
#
# WLAN(STA_IF) associates with the access point the host simulates (state.json "ap": ssid and
# password, or null for none in range). Status follows the esp8266 port: STAT_CONNECTING for
# the first 0.8 s after connect(), then STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD or STAT_GOT_IP,
# judged against the access point as it is now (the ESP8266 keeps retrying by itself). The AP
# interface is active after flashing, as on a real board. Sockets are the VM's real sockets.
from binascii import unhexlify

import _vhw

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_WRONG_PASSWORD = 2
STAT_NO_AP_FOUND = 3
STAT_CONNECT_FAIL = 4
STAT_GOT_IP = 5
_ASSOCIATE_MS = 800
_ifs = ([False, None, None, 0], [True, None, None, 0])  # per interface: active, ssid, key, t connect


class WLAN:
    def __init__(self, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid interface")
        self._if = interface_id
        self._s = _ifs[interface_id]

    def active(self, is_active=None):
        if is_active is None:
            return self._s[0]
        self._s[0] = bool(is_active)
        if not is_active:
            self._s[1] = None
        _vhw.event("wlan", self._if, "active", int(self._s[0]))

    def connect(self, ssid=None, key=None, *, bssid=None):
        if self._if != STA_IF:
            raise OSError("STA required")
        self._s[1] = ssid
        self._s[2] = key or ""
        self._s[3] = _vhw.ms()
        _vhw.event("wlan", 0, "connect", ssid)

    def disconnect(self):
        self._s[1] = None
        _vhw.event("wlan", self._if, "disconnect")

    def status(self, param=None):
        if param == "rssi":  # the access point's signal (state.json "ap" "rssi_dbm")
            ap = _vhw.state().get("ap") or {}
            return ap.get("rssi_dbm", -60)
        s = self._s
        if self._if == AP_IF or not s[0] or s[1] is None:
            return STAT_IDLE
        if _vhw.ms() - s[3] < _ASSOCIATE_MS:
            return STAT_CONNECTING
        ap = _vhw.state().get("ap")
        if not ap or ap.get("ssid") != s[1]:
            return STAT_NO_AP_FOUND
        if ap.get("password", "") != s[2]:
            return STAT_WRONG_PASSWORD
        return STAT_GOT_IP

    def isconnected(self):
        if self._if == AP_IF:
            return self._s[0]
        return self.status() == STAT_GOT_IP

    def ifconfig(self, config=None):
        if config is not None:
            return None
        if self.isconnected():
            return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kwargs):
        if kwargs:
            return None
        param = args[0]
        if param == "mac":
            mac = bytearray(unhexlify(_vhw.state()["mac"]))
            if self._if == AP_IF:
                mac[0] |= 0x02  # the soft-AP's MAC is the locally administered twin
            return bytes(mac)
        if param in ("essid", "ssid"):
            return self._s[1] or ""
        if param == "channel":
            return 1
        raise ValueError("unknown config param")

    def scan(self):
        ap = _vhw.state().get("ap")
        if not ap or not self._s[0]:
            return []
        return [(ap["ssid"].encode(), b"\x02\x00\x00\x00\x00\x01", 1, ap.get("rssi_dbm", -60), 3, False)]
