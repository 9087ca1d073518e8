"""Broker accounts: the Mosquitto password file (broker/passwd) that both routes read.

The password file is the one of the eclipse-mosquitto image (docker-compose.yml mounts broker/ at
/mosquitto/config/) and of `sensornet broker` (the Debian binary). Mosquitto 2.0 opens it after
dropping privileges, as its `mosquitto` user (uid 1883 in the image; the systemd unit runs the
broker as uid 1883 too), so it must be readable by that user: `sensornet broker add-account` run
as root gives it to uid 1883 with mode 0600. Run as another user, the file stays that user's, mode
0600 (a broker run by that user, `sensornet broker`, reads it).

Passwords never appear on a command line: they reach `mosquitto_passwd` on its standard input
(mosquitto_passwd(1) reads the password twice there when `-b` is not given), and reach
`sensornet broker add-account` from a file, the environment or a prompt.

connack_code() asks a running broker whether it accepts an account (one MQTT CONNECT): how a
reload is seen to have taken effect (Broker.reload) and how the tests log in.

Source: mosquitto_passwd(1), mosquitto.conf(5) (password_file), Mosquitto 2.0; MQTT 3.1.1 (CONNECT).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from . import paths

BROKER_UID = 1883  # the eclipse-mosquitto image's `mosquitto` user (and group), and the systemd unit's
PASSWORD_ENV = "SENSORNET_ACCOUNT_PASSWORD"
DEFAULT_PASSWD = paths.BROKER_DIR / "passwd"


class BrokerError(RuntimeError):
    """Mosquitto is missing, would not start, or an account could not be written."""


class AccountError(BrokerError):
    """An account could not be written (mosquitto_passwd missing or refusing, a bad name or password)."""


def find_tool(name: str) -> str:
    """Return the path of a Mosquitto tool (`mosquitto`, `mosquitto_passwd`, ...).

    Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
    Raises AccountError, naming the package to install, when it is not there.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise AccountError(f"{name} not found: install it with `sudo apt-get install mosquitto mosquitto-clients` "
                           "(`make test` and `make demo` do this for you)")
    return found


def check_account(name: str, password: str) -> None:
    """Raise AccountError for a name or password the password file cannot hold."""
    if not name or ":" in name or any(c.isspace() for c in name) or any(c in name for c in "#+/"):
        raise AccountError(f"account name {name!r}: no colon, space, '/', '+' or '#' (it is also a topic level)")
    if not password or "\n" in password or "\r" in password:
        raise AccountError(f"account {name!r}: the password must be one non-empty line")


def write_accounts(password_file: Path, accounts: dict[str, str], owner: int | None = None) -> None:
    """Hash `accounts` (name -> password, str) into a Mosquitto password file, adding or replacing.

    The file is created if missing and always left with mode 0600; `owner` (a uid, with the group
    of the same number) is given it when set (needs root). Raises AccountError when
    mosquitto_passwd fails or a name or password is unusable.
    """
    tool = find_tool("mosquitto_passwd")
    password_file.parent.mkdir(parents=True, exist_ok=True)
    if not password_file.exists():
        password_file.touch(mode=0o600)
    password_file.chmod(0o600)
    for name, password in accounts.items():
        check_account(name, password)
        result = subprocess.run([tool, str(password_file), name], input=f"{password}\n{password}\n",
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise AccountError(f"mosquitto_passwd could not add account {name!r}: "
                               f"{(result.stderr or result.stdout).strip()}")
    password_file.chmod(0o600)
    if owner is not None:
        os.chown(password_file, owner, owner)


def read_password(from_file: Path | None, environ: dict[str, str] | os._Environ[str]) -> str:
    """The new account's password: the first line of `from_file`, else $SENSORNET_ACCOUNT_PASSWORD,
    else a prompt (twice) on a terminal, else the first line of standard input."""
    if from_file is not None:
        lines = from_file.read_text().splitlines()
        return lines[0] if lines else ""
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise AccountError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connack_code(host: str, port: int, username: str, password: str, timeout: float = 2.0) -> int:
    """Send one MQTT 3.1.1 CONNECT (clean session, empty client id) and return the CONNACK's return
    code (int: 0 accepted, 5 not authorized; MQTT 3.1.1 section 3.2.2.3), then disconnect.

    Raises OSError when there is no CONNACK."""
    body = _mqtt_string("MQTT") + bytes([4, 0xC2]) + (10).to_bytes(2, "big")  # user, password, clean session
    body += _mqtt_string("") + _mqtt_string(username) + _mqtt_string(password)
    length, encoded = len(body), b""
    while True:  # the remaining length, 7 bits per byte
        length, digit = divmod(length, 128)
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            break
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"\x10" + encoded + body)
        reply = b""
        while len(reply) < 4:
            chunk = s.recv(4 - len(reply))
            if not chunk:
                raise OSError("the broker closed the connection without a CONNACK")
            reply += chunk
        if reply[0] != 0x20:
            raise OSError(f"not a CONNACK: {reply!r}")
        if reply[3] == 0:
            s.sendall(b"\xe0\x00")  # DISCONNECT
        return reply[3]


def add_account_main(argv: list[str]) -> int:
    """`sensornet broker add-account NAME`: add or replace an account in the password file."""
    parser = argparse.ArgumentParser(
        prog="sensornet broker add-account",
        description="Add or replace a broker account in the password file both routes use (Docker and "
                    "`sensornet broker`). The password comes from --from-file, else the environment variable "
                    f"{PASSWORD_ENV}, else a prompt, else the first line of standard input; never from the "
                    "command line. A running `sensornet broker` reloads by itself; for Docker run "
                    "`docker compose kill -s SIGHUP mosquitto`.")
    parser.add_argument("name", help="the account, named after the client id: huzzah-<chip id>, bridge, operator ...")
    parser.add_argument("--passwd", type=Path, default=DEFAULT_PASSWD,
                        help="the Mosquitto password file (default broker/passwd)")
    parser.add_argument("--from-file", type=Path, default=None, metavar="FILE",
                        help="read the password from the first line of FILE")
    parser.add_argument("--owner", type=int, default=None, metavar="UID",
                        help=f"give the file to this uid and group (default {BROKER_UID}, the broker's user, "
                             "when run as root; else unchanged)")
    args = parser.parse_args(argv)
    owner = args.owner if args.owner is not None else (BROKER_UID if os.geteuid() == 0 else None)
    try:
        password = read_password(args.from_file, os.environ)
        write_accounts(args.passwd, {args.name: password}, owner)
    except PermissionError as e:
        print(f"sensornet broker add-account: {e.filename or args.passwd}: permission denied (the password file "
              f"belongs to uid {BROKER_UID}, the broker's user, after a root add-account): run it with sudo",
              file=sys.stderr)
        return 1
    except (AccountError, OSError) as e:
        print(f"sensornet broker add-account: {e}", file=sys.stderr)
        return 2 if isinstance(e, AccountError) else 1
    print(f"sensornet broker add-account: account {args.name} written to {args.passwd}", file=sys.stderr)
    return 0
