# Device configuration: config.json on the board's filesystem, flat keys, merged over DEFAULTS
# (the mqtt_as pattern: defaults in code, secrets in a local file that is never committed).
import json

DEFAULTS = {
    "mqtt_port": 1883,
    "client_id": None,  # None: "huzzah-" + hex of machine.unique_id()
    "publish_interval_s": 10,
    "wifi_timeout_s": 15,  # boot.py waits this long for the access point
    "mqtt_keepalive_s": 60,  # the broker drops us after 1.5 x this without traffic
    "tsl2561_address": 0x39,  # 0x29, 0x39 or 0x49 (ADDR pin low, floating, high)
    "tsl2561_gain": "auto",  # "auto", 1 or 16
    "tsl2561_integration_ms": 402,  # 13.7, 101 or 402
    "tsl2561_package": "T",  # "T" (T, FN and CL packages) or "CS"
    "queue_size": 20,  # readings kept while the broker is unreachable
}
_STR = ("wifi_ssid", "wifi_password", "mqtt_host", "mqtt_user", "mqtt_password")


class ConfigError(Exception):
    pass


def _need(key, ok, fix):
    # The message names the key, never its value: values include passwords.
    if not ok:
        raise ConfigError(f"config.json: key {key}: {fix}")


def load(path="config.json"):
    """Read and check the configuration.

    Returns a dict: DEFAULTS updated with the file's keys. Raises ConfigError, whose message
    names the key and the fix, when the file is missing, is not a JSON object, or a value is
    missing or of the wrong type or range.
    """
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise ConfigError(f"{path} missing: copy config.example.json to {path} and fill it in")
    except ValueError:
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
    for key in ("publish_interval_s", "wifi_timeout_s", "mqtt_keepalive_s", "queue_size"):
        v = merged[key]
        _need(key, isinstance(v, (int, float)) and v > 0, "use a positive number")
    _need("tsl2561_address", merged["tsl2561_address"] in (0x29, 0x39, 0x49), "use 41, 57 or 73 (0x29, 0x39, 0x49)")
    _need("tsl2561_gain", merged["tsl2561_gain"] in ("auto", 1, 16), 'use "auto", 1 or 16')
    _need("tsl2561_integration_ms", merged["tsl2561_integration_ms"] in (13.7, 101, 402), "use 13.7, 101 or 402")
    _need("tsl2561_package", merged["tsl2561_package"] in ("T", "CS"), 'use "T" or "CS"')
    return merged
