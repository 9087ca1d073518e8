"""`sensornet cmd CLIENT_ID NAME [VALUE]`: send one remote command to a device and print its reply.

Publishes VALUE (or nothing) on cmd/<CLIENT_ID>/<NAME> (QoS 1) as the broker account `operator`
(its client id is its account name), then waits for the device's reply and prints its JSON
payload on stdout: health on sensors/<CLIENT_ID>/system when the device accepted the command
(exit status 0), {"cmd", "error"} on status/<CLIENT_ID>/error when it refused it (exit status 1).
No reply within --timeout: exit status 1. Commands (README, topic table): interval SECONDS,
identify, reboot, status. A health message the device publishes by itself at that moment is
taken as the reply too.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from feather_huzzah import topics

ACCOUNT = "operator"  # the broker account, and the client id (use_username_as_clientid)
PASSWORD_ENV = "SENSORNET_OPERATOR_PASSWORD"


class UsageError(Exception):
    """Bad arguments or configuration: the message names the argument and the fix (exit status 2)."""


def _level(value: str, what: str) -> str:
    if not value or any(c in value for c in "/+#\0"):
        raise UsageError(f"{what} {value!r}: use a single topic level, without / + #")
    return value


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text().strip()
        except OSError as e:
            raise UsageError(f"--password-file: cannot read it ({e.strerror}): give a readable file") from e
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise UsageError(f"no password for the broker account {ACCOUNT}: set ${PASSWORD_ENV} or --password-file")
    return password


def send(host: str, port: int, password: str, client_id: str, name: str, value: str,
         timeout: float) -> tuple[str, bytes] | None:
    """Send one command; return the reply (topic, payload), or None when none came in `timeout` s.

    Raises OSError when the broker cannot be reached, ConnectionError when it refuses the account.
    """
    replies: queue.Queue[tuple[str, bytes] | Exception] = queue.Queue()
    error_topic, health_topic = topics.error(client_id), topics.system(client_id)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            replies.put(ConnectionError(f"broker refused the account {ACCOUNT}: {rc}"))
        else:
            c.subscribe([(error_topic, 1), (health_topic, 1)])

    def on_subscribe(c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        if any(code.is_failure for code in codes):
            replies.put(ConnectionError(f"broker refused {ACCOUNT} the replies' topics (broker/acl)"))
        else:
            c.publish(topics.cmd(client_id, name), value.encode(), qos=1)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        replies.put((msg.topic, bytes(msg.payload)))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=ACCOUNT)
    client.username_pw_set(ACCOUNT, password)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        reply = replies.get(timeout=timeout)
    except queue.Empty:
        return None
    finally:
        client.disconnect()
        client.loop_stop()
    if isinstance(reply, Exception):
        raise reply
    return reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sensornet cmd", description=__doc__.split("\n\n")[0],
                                     epilog=f"The password: --password-file, else ${PASSWORD_ENV}.")
    parser.add_argument("client_id", metavar="CLIENT_ID", help="the device, e.g. huzzah-01ffc000")
    parser.add_argument("name", metavar="NAME", help="interval, identify, reboot or status")
    parser.add_argument("value", metavar="VALUE", nargs="?", default="", help="the payload (interval: seconds)")
    parser.add_argument("--host", default="localhost", help="broker host (default localhost)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    parser.add_argument("--password-file", help=f"file holding the {ACCOUNT} account's password")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply (default 10)")
    args = parser.parse_args(argv)
    try:
        client_id = _level(args.client_id, "CLIENT_ID")
        name = _level(args.name, "NAME")
        if not 0 < args.timeout <= 3600:
            raise UsageError(f"--timeout {args.timeout}: use seconds from 0 to 3600")
        password = _password(args)
    except UsageError as e:
        print(f"sensornet cmd: {e}", file=sys.stderr)
        return 2
    try:
        reply = send(args.host, args.port, password, client_id, name, args.value, args.timeout)
    except (OSError, ConnectionError) as e:
        print(f"sensornet cmd: broker {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    if reply is None:
        print(f"sensornet cmd: no reply from {client_id} in {args.timeout:g} s: is it online "
              f"(status/{client_id})?", file=sys.stderr)
        return 1
    topic, payload = reply
    print(payload.decode(errors="replace"))
    return 1 if topic == topics.error(client_id) else 0
