# Wi-Fi in STA mode (network.WLAN, esp8266 port). The ESP8266 keeps retrying an association
# by itself once connect() was called; we only start it, watch it and restart it.
import time

import network


def sta():
    return network.WLAN(network.STA_IF)


def start(ssid, password):
    """Turn the access-point interface off (it is on after flashing) and start connecting."""
    ap = network.WLAN(network.AP_IF)
    if ap.active():
        ap.active(False)
    s = sta()
    s.active(True)
    if not s.isconnected():
        s.connect(ssid, password)


def wait(timeout_ms):
    """Block until connected or `timeout_ms` (int, ms) pass. Returns network's STAT_* (int)."""
    s = sta()
    t0 = time.ticks_ms()
    while not s.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
        time.sleep_ms(100)
    return s.status()


def mac():
    """The STA interface's MAC as lowercase 'aa:bb:cc:dd:ee:ff' (str)."""
    return ":".join(f"{b:02x}" for b in sta().config("mac"))
