# Device configuration: config.json on the board's filesystem, flat keys, merged over DEFAULTS
# (the mqtt_as pattern: defaults in code, secrets in a local file that is never committed).
# Any content gives a ConfigError (LED code 6), never another exception: the size is checked
# before parsing, and numbers against ranges the firmware can live with.
import json
import os

from micropython import const

PATH = "config.json"
MAX_BYTES = const(2048)  # a config is a few hundred bytes; a bigger file is not parsed at all

DEFAULTS = {
    "mqtt_port": 1883,
    "client_id": None,  # None: "huzzah-" + hex of machine.unique_id()
    "publish_interval_s": 10,
    "wifi_timeout_s": 15,  # boot.py waits this long for the access point
    "mqtt_keepalive_s": 60,  # 0: off; pings at half of it; the broker drops us after 1.5 x this
    "mqtt_timeout_s": 10,  # for the TCP connect and CONNACK; PUBACK and PINGRESP too (<= keepalive/2)
    "tsl2561_address": 0x39,  # 0x29, 0x39 or 0x49 (ADDR pin low, floating, high)
    "tsl2561_gain": "auto",  # "auto", 1 or 16
    "tsl2561_integration_ms": 402,  # 13.7, 101 or 402
    "tsl2561_package": "T",  # "T" (T, FN and CL packages) or "CS"
    "queue_size": 20,  # readings kept while the broker is unreachable
    "mqtt_lost_reset_s": 900,  # reset the board after this long without the broker (0: never)
    "ntp_host": "pool.ntp.org",  # the clock is set from it (ntptime) when reachable; null: never
    "health_every": 10,  # health on sensors/<client_id>/system every this many readings (0: on connect only)
}
_STR = ("wifi_ssid", "wifi_password", "mqtt_host", "mqtt_user", "mqtt_password")
# numbers: (key, lowest, highest, whole numbers only)
_RANGES = (("publish_interval_s", 1, 86400, False), ("wifi_timeout_s", 1, 300, False),
           ("mqtt_keepalive_s", 0, 65535, True), ("mqtt_timeout_s", 1, 300, False), ("queue_size", 1, 50, True),
           ("mqtt_lost_reset_s", 0, 604800, False), ("health_every", 0, 10000, True))


class ConfigError(Exception):
    pass


def _need(key, ok, fix):
    # The message names the key, never its value: values include passwords.
    if not ok:
        raise ConfigError(f"config.json: key {key}: {fix}")


def load(path=PATH):
    """Read and check the configuration.

    Returns a dict: DEFAULTS updated with the file's keys. Raises ConfigError, whose message
    names the key and the fix, when the file is missing, too big, not a JSON object, or a value is
    missing or of the wrong type or range; never another exception, whatever the file holds.
    """
    try:
        size = os.stat(path)[6]
    except OSError:
        raise ConfigError(f"{path} missing: copy config.example.json to {path} and fill it in")
    if size > MAX_BYTES:
        raise ConfigError(f"{path} is {size} bytes, over the limit of {MAX_BYTES}: keep only its flat keys")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except MemoryError:
        raise ConfigError(f"{path} does not fit in memory (nested too deep?): keep only its flat keys")
    except Exception:  # ValueError: bad syntax or UTF-8; RuntimeError; OSError reading it
        raise ConfigError(f"{path} is not valid JSON: fix its syntax")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path} must hold a JSON object of flat keys")
    merged = dict(DEFAULTS)
    merged.update(cfg)
    for key in _STR:
        v = merged.get(key)
        _need(key, isinstance(v, str) and (v != "" or key == "wifi_password"), "set it to a non-empty string")
    port = merged["mqtt_port"]
    _need("mqtt_port", isinstance(port, int) and 0 < port < 65536, "use a port number 1-65535")
    cid = merged["client_id"]
    _need("client_id", cid is None or isinstance(cid, str) and 0 < len(cid) <= 23 and "/" not in cid
          and "+" not in cid and "#" not in cid, "use null or 1-23 characters without / + #")
    for key, lo, hi, whole in _RANGES:
        v = merged[key]
        _need(key, isinstance(v, int if whole else (int, float)) and not isinstance(v, bool) and lo <= v <= hi,
              f"use a {'whole ' if whole else ''}number from {lo} to {hi}")
    _need("tsl2561_address", merged["tsl2561_address"] in (0x29, 0x39, 0x49), "use 41, 57 or 73 (0x29, 0x39, 0x49)")
    _need("tsl2561_gain", merged["tsl2561_gain"] in ("auto", 1, 16), 'use "auto", 1 or 16')
    _need("tsl2561_integration_ms", merged["tsl2561_integration_ms"] in (13.7, 101, 402), "use 13.7, 101 or 402")
    ntp = merged["ntp_host"]
    _need("ntp_host", ntp is None or isinstance(ntp, str) and 0 < len(ntp) <= 253 and " " not in ntp,
          "use a host name or IP address, or null for no NTP")
    _need("tsl2561_package", merged["tsl2561_package"] in ("T", "CS"), 'use "T" or "CS"')
    return merged
