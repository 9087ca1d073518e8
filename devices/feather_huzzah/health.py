# Health: the payload of sensors/<client_id>/system (README, topic table). app.py loads this
# module only for the call and drops it after (its code costs no heap in between).
import gc
import json

import statusled
import wifi
from machine import reset_cause

VERSION = "0.2.0"  # the firmware's version, in every health payload
# machine.reset_cause() on the esp8266 port: the SDK's rst_info reason 0-6 (PWRON_RESET 0,
# WDT_RESET 1, exception 2, soft watchdog 3, SOFT_RESET 4, DEEPSLEEP_RESET 5, HARD_RESET 6)
_CAUSES = ("power_on", "wdt", "exception", "wdt", "soft", "deep_sleep", "hard")


def payload(node, uptime_ms, ts=None):
    """Health as JSON (str): {"uptime_s": int, "heap_free": int (bytes, after gc.collect()),
    "rssi_dbm": int (0 while not associated), "reset_cause": str, "version": str, "dropped": int
    (readings dropped from the full outbox), "wifi_reconnects": int, "mqtt_reconnects": int,
    "fault": int (the LED code shown, 0 = none)} and "ts" (Unix seconds, UTC) when given."""
    sta = wifi.sta()
    rssi = sta.status("rssi") if sta.isconnected() else 0
    cause = reset_cause()
    h = {"uptime_s": uptime_ms // 1000, "heap_free": 0, "rssi_dbm": rssi,
         "reset_cause": _CAUSES[cause] if 0 <= cause < len(_CAUSES) else str(cause), "version": VERSION,
         "dropped": node.dropped, "wifi_reconnects": max(0, node.wifi_ups - 1),
         "mqtt_reconnects": max(0, node.mqtt_ups - 1), "fault": statusled.active()}
    if ts:
        h["ts"] = ts
    gc.collect()
    h["heap_free"] = gc.mem_free()
    return json.dumps(h)
