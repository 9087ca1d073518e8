"""Run Mosquitto with the repo's configuration, on machines without Docker.

`broker/mosquitto.conf` is written for the eclipse-mosquitto:2 image. `Broker` runs the same
file with the Debian `mosquitto` binary: it replaces the image's `/mosquitto/` paths with a
state directory (password file, persistence database), optionally changes the listener's port
and bind address, and hashes the given accounts into the password file with `mosquitto_passwd`.
The ACL file is used as committed (broker/acl).

Source for the settings: mosquitto.conf(5) and mosquitto_passwd(1), Mosquitto 2.0.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import childproc

from . import paths

DEFAULT_PORT = 1883


class BrokerError(RuntimeError):
    """Mosquitto is missing, would not start, or an account could not be written."""


def find_tool(name: str) -> str:
    """Return the path of a Mosquitto tool (`mosquitto`, `mosquitto_passwd`, ...).

    Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
    Raises BrokerError, naming the package to install, when it is not there.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError(f"{name} not found: install it with `sudo apt-get install mosquitto mosquitto-clients` "
                          "(`make test` and `make demo` do this for you)")
    return found


def render_config(template: str, state_dir: Path, port: int | None = None, bind: str | None = None,
                  acl_file: Path | None = None) -> str:
    """Turn the image's mosquitto.conf (str) into one for a local broker (str).

    `/mosquitto/config/passwd` -> `<state_dir>/passwd`, `/mosquitto/config/acl` -> `acl_file`
    (default: broker/acl in the repo), `/mosquitto/data/` -> `<state_dir>/data/`; `listener 1883`
    gets `port` and `bind` when given. When run as root, `user root` keeps Mosquitto from
    dropping to the `mosquitto` user, which could not read the checkout.
    """
    acl_file = acl_file or paths.BROKER_DIR / "acl"
    text = template.replace("/mosquitto/config/passwd", str(state_dir / "passwd"))
    text = text.replace("/mosquitto/config/acl", str(acl_file))
    text = text.replace("/mosquitto/data/", str(state_dir / "data") + "/")
    listener = f"listener {port or DEFAULT_PORT}" + (f" {bind}" if bind else "")
    text, count = re.subn(r"(?m)^listener \d+.*$", listener, text, count=1)
    if count != 1:
        raise BrokerError("broker/mosquitto.conf has no `listener` line")
    if os.geteuid() == 0:
        text += "\n# added by sensornet broker: running as root, do not drop privileges\nuser root\n"
    return text


def write_accounts(password_file: Path, accounts: dict[str, str]) -> None:
    """Hash `accounts` (name -> password, str) into a Mosquitto password file, adding or replacing.

    Raises BrokerError when mosquitto_passwd fails (for example a name with a colon).
    """
    tool = find_tool("mosquitto_passwd")
    password_file.parent.mkdir(parents=True, exist_ok=True)
    if not password_file.exists():
        password_file.touch(mode=0o600)
    for name, password in accounts.items():
        result = subprocess.run([tool, "-b", str(password_file), name, password],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"mosquitto_passwd could not add account {name!r}: {result.stderr.strip()}")
    password_file.chmod(0o600)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now (int)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Return True once a TCP connection to host:port succeeds, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """A Mosquitto process running broker/mosquitto.conf from a state directory.

    state_dir: holds mosquitto.conf (rendered), passwd, data/ and mosquitto.log.
    accounts: name -> password (str) written to the password file before start.
    Use as a context manager, or call start() and stop().
    """

    def __init__(self, state_dir: Path, port: int = DEFAULT_PORT, bind: str | None = None,
                 accounts: dict[str, str] | None = None, config: Path | None = None):
        self.state_dir = Path(state_dir)
        self.port = port
        self.bind = bind
        self.accounts = dict(accounts or {})
        self.config_template = Path(config or paths.BROKER_DIR / "mosquitto.conf")
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.state_dir / "mosquitto.log"

    @property
    def host(self) -> str:
        return self.bind if self.bind and self.bind != "0.0.0.0" else "127.0.0.1"

    def prepare(self) -> Path:
        """Write the rendered config and the password file; return the config's path."""
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)
        write_accounts(self.state_dir / "passwd", self.accounts)
        conf = self.state_dir / "mosquitto.conf"
        conf.write_text(render_config(self.config_template.read_text(), self.state_dir, self.port, self.bind))
        return conf

    def start(self, timeout: float = 10.0, stdout: IO[bytes] | None = None) -> Broker:
        """Start Mosquitto and wait until it accepts connections.

        stdout: where Mosquitto's log goes (a file object); default state_dir/mosquitto.log.
        Raises BrokerError when it exits or does not listen within `timeout` seconds.
        """
        command = [find_tool("mosquitto"), "-c", str(self.prepare())]
        if stdout is None:
            with open(self.log_path, "ab") as log:  # Mosquitto keeps its own descriptor of the file
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        else:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited with status {self.process.returncode}; "
                                  f"see {self.log_path}")
            if wait_for_port(self.host, self.port, 0.2):
                return self
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def add_account(self, name: str, password: str) -> None:
        """Add an account to the running broker (password file rewrite, then SIGHUP to reload)."""
        self.accounts[name] = password
        write_accounts(self.state_dir / "passwd", {name: password})
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)
            time.sleep(0.2)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop Mosquitto with SIGTERM (it saves its persistence database), SIGKILL after `timeout` s."""
        childproc.stop(self.process, timeout)
        self._closed()

    def kill(self) -> None:
        """Stop Mosquitto with SIGKILL, as a crash would."""
        childproc.kill(self.process)
        self._closed()

    def _closed(self) -> None:
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_account(text: str) -> tuple[str, str]:
    """Parse `NAME:PASSWORD` (str) into a pair; raises ValueError naming the expected form."""
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise ValueError(f"--account {text!r}: expected NAME:PASSWORD")
    return name, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sensornet broker",
        description="Run Mosquitto with broker/mosquitto.conf and broker/acl using the Debian mosquitto "
                    "binary (for machines without Docker; with Docker use `docker compose up`).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="listener port (default 1883)")
    parser.add_argument("--bind", default=None, help="listen on this address only (default: every interface)")
    parser.add_argument("--state-dir", type=Path, default=paths.STATE_DIR / "broker",
                        help="directory for the password file and persistence database (default .sensornet/broker)")
    parser.add_argument("--account", action="append", default=[], metavar="NAME:PASSWORD",
                        help="add or replace a broker account before starting (repeatable); a device's account "
                             "is named after its client id, the bridge's is `bridge`")
    args = parser.parse_args(argv)
    try:
        accounts = dict(parse_account(a) for a in args.account)
    except ValueError as e:
        print(f"sensornet broker: {e}", file=sys.stderr)
        return 2
    broker = Broker(args.state_dir, port=args.port, bind=args.bind, accounts=accounts)
    try:
        broker.start(stdout=sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None)
    except BrokerError as e:
        print(f"sensornet broker: {e}", file=sys.stderr)
        return 1
    process = broker.process
    assert process is not None  # start() returned: it runs
    print(f"sensornet broker: mosquitto listening on {broker.bind or '0.0.0.0'}:{broker.port} "
          f"(state in {broker.state_dir}, user {getpass.getuser()})", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0
