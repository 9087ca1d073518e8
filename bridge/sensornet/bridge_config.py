"""Configuration of `sensornet bridge`: a TOML file (see bridge/bridge.example.toml) plus flags.

Flags override the file; `--endpoint` (repeatable) replaces the file's endpoint list.
The MQTT password comes from the first of:
  1. --password-file PATH
  2. the environment variable SENSORNET_BRIDGE_PASSWORD
  3. [mqtt] password_file or [mqtt] password in the file (setting both is an error)
  4. $CREDENTIALS_DIRECTORY/mqtt-password, the credential systemd's
     LoadCredential=mqtt-password:/etc/sensornet/bridge.password provides
and else none (a broker with allow_anonymous). A relative password file is looked up in
$CREDENTIALS_DIRECTORY when that is set, else next to the config file ([mqtt] password_file)
or in the current directory (--password-file). One trailing newline is stripped.

Every problem raises ConfigError with one message naming the file, table and key (or flag).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .envelope import DEFAULT_MAX_PAYLOAD_BYTES, SUBSCRIPTIONS

PASSWORD_ENV = "SENSORNET_BRIDGE_PASSWORD"
CREDENTIAL_NAME = "mqtt-password"
ENDPOINT_SCHEMES = ("ws", "wss", "tcp")
ENDPOINT_HINT = "use e.g. ws://127.0.0.1:8765 or tcp://127.0.0.1:8081"

# table -> key -> (type, default); None as default means "no default".
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "mqtt": {
        "host": (str, "localhost"),
        "port": (int, 1883),
        "username": (str, "bridge"),
        "password": (str, None),
        "password_file": (str, None),
        "client_id": (str, None),
        "keepalive_s": (int, 60),
        "ca_file": (str, None),
    },
    "bridge": {
        "endpoints": (list, None),
        "endpoints_without_ack": (list, []),
        "store_max_bytes": (int, 64 * 1024 * 1024),
        "max_payload_bytes": (int, DEFAULT_MAX_PAYLOAD_BYTES),
        "state_dir": (str, None),
        "share_group": (str, None),
        "metrics_port": (int, 0),
    },
}


def _ca_file(value: str | None, from_flag: bool, name: str) -> str | None:
    """The CA certificate for TLS to the broker, checked to exist."""
    if value is not None and not Path(value).is_file():
        where = "--ca-file" if from_flag else f"{name}: [mqtt] ca_file"
        raise ConfigError(f"{where}: {value}: no such file (scripts/make-tls.sh makes broker/tls/ca.crt)")
    return value


class ConfigError(ValueError):
    """Bad configuration; str(error) is the one-line message for stderr (exit status 2)."""


@dataclass(frozen=True)
class MqttSettings:
    """How the bridge connects to the broker.

    port: TCP port (1..65535); keepalive_s: MQTT keep alive in seconds (MQTT 3.1.1 section
    3.1.2.10; 0 turns it off); client_id: fixed, so the persistent session resumes.
    """

    host: str = "localhost"
    port: int = 1883
    username: str = "bridge"
    password: str | None = field(default=None, repr=False)
    client_id: str = "bridge"
    keepalive_s: int = 60
    ca_file: str | None = None  # TLS (the broker's 8883) verified against this CA when set


@dataclass(frozen=True)
class BridgeConfig:
    """Everything `Bridge` needs: broker settings, endpoint URLs and limits.

    endpoints: ws://, wss:// or tcp:// URLs (tcp:// needs a port); endpoints_without_ack: those
    of them that send no acknowledgements (an envelope written to their socket counts as
    delivered); store_max_bytes: bytes of envelopes the store holds before the bridge stops
    acknowledging the broker (which then holds the backlog); max_payload_bytes: larger messages
    are rejected; state_dir: the store's directory (None: $STATE_DIRECTORY, which systemd's
    StateDirectory= sets, else .sensornet/bridge in the checkout); share_group: subscribe through
    the shared subscription $share/<group>/... (None: a plain subscription); metrics_port:
    Prometheus metrics on http://0.0.0.0:<port>/metrics (0: off).
    """

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    endpoints: tuple[str, ...] = ()
    endpoints_without_ack: frozenset[str] = frozenset()
    store_max_bytes: int = 64 * 1024 * 1024
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    state_dir: Path | None = None
    share_group: str | None = None
    metrics_port: int = 0


def check_endpoint_url(url: Any, where: str) -> str:
    """Return `url` if it is a usable ws://, wss:// or tcp:// URL, else raise ConfigError.

    where: how to name it in the message ("bridge.toml: [bridge] endpoints[0]", "--endpoint").
    """
    if not isinstance(url, str):
        raise ConfigError(f"{where}: {url!r} is not a string; {ENDPOINT_HINT}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{where}: {url!r} is not a valid URL ({e}); {ENDPOINT_HINT}") from None
    if parts.scheme not in ENDPOINT_SCHEMES:
        raise ConfigError(f"{where}: {url!r} is not ws://, wss:// or tcp://; {ENDPOINT_HINT}")
    if not parts.hostname:
        raise ConfigError(f"{where}: {url!r} has no host; {ENDPOINT_HINT}")
    if parts.scheme == "tcp" and (port is None or parts.path not in ("", "/") or parts.query):
        raise ConfigError(f"{where}: {url!r}: a tcp:// endpoint is tcp://HOST:PORT; {ENDPOINT_HINT}")
    return url


def read_password_file(path: str, base: Path, where: str, environ: Mapping[str, str]) -> str:
    """Read a password file (see the module docstring for how a relative path is resolved)."""
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        credentials = environ.get("CREDENTIALS_DIRECTORY")
        resolved = (Path(credentials) if credentials else base) / resolved
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"{where}: cannot read password file {str(resolved)!r}: {reason}") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError(f"{where}: password file {str(resolved)!r} is empty")
    return password


def load_toml(path: Path) -> dict[str, Any]:
    """Read and type-check a config file; returns {table: {key: value}} with only known keys."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{name}: cannot read config file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: cannot read config file: not UTF-8 text (byte {e.start}: {e.reason}); "
                          "save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name}: not valid TOML: {e}") from None
    for table, values in data.items():
        if table not in SCHEMA:
            raise ConfigError(f"{name}: unknown table [{table}]; known: {', '.join(f'[{t}]' for t in SCHEMA)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: {table} must be a table [{table}], not a {type(values).__name__}")
        for key, value in values.items():
            if key not in SCHEMA[table]:
                raise ConfigError(f"{name}: [{table}] unknown key {key!r}; known: {', '.join(SCHEMA[table])}")
            expected = SCHEMA[table][key][0]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{name}: [{table}] {key}: expected {_type_name(expected)}, "
                                  f"got {_type_name(type(value))} {value!r}")
    return data


def _type_name(t: type) -> str:
    return {str: "a string", int: "an integer", list: "a list", bool: "a boolean", float: "a float",
            dict: "a table"}.get(t, t.__name__)


def _check_range(value: int, low: int, high: int | None, where: str) -> int:
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{where}: {value} is out of range ({bound})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensornet bridge",
        description=f"Forward device messages from the MQTT broker ({', '.join(SUBSCRIPTIONS)}, QoS 1, "
                    "persistent session) to WebSocket and TCP endpoints as JSON envelopes.",
        epilog=f"Password precedence: --password-file, ${PASSWORD_ENV}, [mqtt] password_file / password, "
               f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}. See bridge/bridge.example.toml.")
    parser.add_argument("--config", type=Path, help="TOML config file (keys in bridge/bridge.example.toml)")
    parser.add_argument("--host", help="broker host (default localhost)")
    parser.add_argument("--port", type=int, help="broker port (default 1883)")
    parser.add_argument("--username", help="broker account (default bridge)")
    parser.add_argument("--password-file", help="file holding the broker password")
    parser.add_argument("--ca-file", help="connect with TLS, verifying the broker against this CA certificate "
                        "(broker/tls/ca.crt; use --port 8883)")
    parser.add_argument("--client-id", help="MQTT client id of the persistent session (default: the username)")
    parser.add_argument("--endpoint", action="append", metavar="URL",
                        help="ws://, wss:// or tcp://HOST:PORT endpoint (repeatable; replaces the file's list)")
    parser.add_argument("--endpoint-without-ack", action="append", metavar="URL", default=[],
                        help="an endpoint that sends no acknowledgements (repeatable; also one of the endpoints)")
    parser.add_argument("--state-dir", help="directory of the bridge's store (default: $STATE_DIRECTORY)")
    parser.add_argument("--share-group", help="share the load with other bridges: subscribe via $share/GROUP/...")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: off)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="stderr log level (default INFO)")
    return parser


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> BridgeConfig:
    """Merge parsed flags over the config file and defaults; raise ConfigError on any problem."""
    environ = os.environ if environ is None else environ
    data = load_toml(args.config) if args.config else {}
    name = str(args.config) if args.config else "(no --config)"
    mqtt_file, bridge_file = data.get("mqtt", {}), data.get("bridge", {})

    def pick(table: str, key: str, flag_value: Any) -> Any:
        if flag_value is not None:
            return flag_value
        return {"mqtt": mqtt_file, "bridge": bridge_file}[table].get(key, SCHEMA[table][key][1])

    port = pick("mqtt", "port", args.port)
    _check_range(port, 1, 65535, "--port" if args.port is not None else f"{name}: [mqtt] port")
    keepalive = _check_range(pick("mqtt", "keepalive_s", None), 0, 65535, f"{name}: [mqtt] keepalive_s")
    host = pick("mqtt", "host", args.host)
    if not host:
        raise ConfigError("--host: empty" if args.host is not None else f"{name}: [mqtt] host: empty")
    client_id = pick("mqtt", "client_id", args.client_id)
    username = pick("mqtt", "username", args.username)
    if client_id is None:
        client_id = username  # the broker may enforce it (use_username_as_clientid)
    if not username:
        raise ConfigError("--username: empty; name the broker account (e.g. --username bridge)"
                          if args.username is not None else
                          f"{name}: [mqtt] username: empty; name the broker account (username = \"bridge\") "
                          "or remove the key for the default")
    if not client_id:
        raise ConfigError("--client-id: empty" if args.client_id is not None else
                          f"{name}: [mqtt] client_id: empty (a persistent session needs a fixed client id)")
    settings = MqttSettings(host=host, port=port, username=username,
                            password=_password(args, mqtt_file, name, environ),
                            client_id=client_id, keepalive_s=keepalive,
                            ca_file=_ca_file(pick("mqtt", "ca_file", args.ca_file), args.ca_file is not None, name))
    endpoints = _endpoints(args, bridge_file, name)
    without_ack = _without_ack(args, bridge_file, name, endpoints)
    share_group = pick("bridge", "share_group", args.share_group)
    if share_group is not None and (not share_group or any(c in share_group for c in "/+#") or share_group.isspace()):
        where = "--share-group" if args.share_group is not None else f"{name}: [bridge] share_group"
        raise ConfigError(f"{where}: {share_group!r} is not a group name (non-empty, no / + #); "
                          "remove it for a plain subscription")
    metrics_port = pick("bridge", "metrics_port", args.metrics_port)
    _check_range(metrics_port, 0, 65535, "--metrics-port" if args.metrics_port is not None
                 else f"{name}: [bridge] metrics_port")
    return BridgeConfig(
        mqtt=settings,
        endpoints=endpoints + tuple(url for url in without_ack if url not in endpoints),
        endpoints_without_ack=frozenset(without_ack),
        store_max_bytes=_check_range(pick("bridge", "store_max_bytes", None), 65536, None,
                                     f"{name}: [bridge] store_max_bytes"),
        max_payload_bytes=_check_range(pick("bridge", "max_payload_bytes", None), 1, 268435455,
                                       f"{name}: [bridge] max_payload_bytes"),
        state_dir=_state_dir(args, bridge_file, name),
        share_group=share_group, metrics_port=metrics_port)


def _without_ack(args: argparse.Namespace, bridge_file: dict[str, Any], name: str,
                 endpoints: tuple[str, ...]) -> tuple[str, ...]:
    if args.endpoint_without_ack:
        return tuple(check_endpoint_url(url, "--endpoint-without-ack") for url in args.endpoint_without_ack)
    urls = bridge_file.get("endpoints_without_ack", [])
    for i, url in enumerate(urls):
        where = f"{name}: [bridge] endpoints_without_ack[{i}]"
        check_endpoint_url(url, where)
        if url not in endpoints:
            raise ConfigError(f"{where}: {url!r} is not one of [bridge] endpoints; add it there too")
    return tuple(urls)


def _state_dir(args: argparse.Namespace, bridge_file: dict[str, Any], name: str) -> Path | None:
    if args.state_dir is not None:
        if not args.state_dir:
            raise ConfigError("--state-dir: empty; give a directory or leave the flag out")
        return Path(args.state_dir).expanduser().resolve()
    if "state_dir" not in bridge_file:
        return None
    if not bridge_file["state_dir"]:
        raise ConfigError(f"{name}: [bridge] state_dir: empty; give a directory (state_dir = \"/var/lib/sensornet\") "
                          "or remove the key for $STATE_DIRECTORY")
    path = Path(bridge_file["state_dir"]).expanduser()
    return path if path.is_absolute() else args.config.resolve().parent / path


def _endpoints(args: argparse.Namespace, bridge_file: dict[str, Any], name: str) -> tuple[str, ...]:
    if args.endpoint:
        flag_urls = tuple(check_endpoint_url(url, "--endpoint") for url in args.endpoint)
        duplicates = sorted({url for url in flag_urls if flag_urls.count(url) > 1})
        if duplicates:
            raise ConfigError(f"--endpoint: {duplicates[0]!r} is given twice")
        return flag_urls
    urls = bridge_file.get("endpoints")
    if not urls and args.endpoint_without_ack:
        return ()
    if not urls and args.config is None:
        raise ConfigError("no endpoints: pass --endpoint URL (repeatable), or --config FILE with "
                          "[bridge] endpoints = [...]; see bridge/bridge.example.toml")
    if not urls:
        raise ConfigError(f"{name}: [bridge] endpoints: no endpoints; set endpoints = [\"ws://HOST:8765\"] in "
                          "the config file or pass --endpoint URL")
    checked: list[str] = []
    for i, url in enumerate(urls):
        where = f"{name}: [bridge] endpoints[{i}]"
        checked.append(check_endpoint_url(url, where))
        if url in checked[:-1]:
            raise ConfigError(f"{where}: {url!r} is listed twice (as endpoints[{checked.index(url)}])")
    return tuple(checked)


def _password(args: argparse.Namespace, mqtt_file: dict[str, Any], name: str,
              environ: Mapping[str, str]) -> str | None:
    if args.password_file:
        return read_password_file(args.password_file, Path.cwd(), "--password-file", environ)
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    if "password" in mqtt_file and "password_file" in mqtt_file:
        raise ConfigError(f"{name}: [mqtt] password and password_file are both set; keep one")
    if "password_file" in mqtt_file:
        base = args.config.resolve().parent
        return read_password_file(mqtt_file["password_file"], base, f"{name}: [mqtt] password_file", environ)
    if "password" in mqtt_file:
        password: str = mqtt_file["password"]  # load_toml checked its type
        return password
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return read_password_file(CREDENTIAL_NAME, Path(credentials), "$CREDENTIALS_DIRECTORY", environ)
    return None


def load_config(argv: list[str], environ: Mapping[str, str] | None = None) -> tuple[BridgeConfig, str]:
    """Parse `sensornet bridge` arguments; return (config, log level name).

    Raises ConfigError for bad values; argparse itself exits with status 2 on unknown flags.
    """
    args = build_parser().parse_args(argv)
    return resolve(args, environ), args.log_level
