"""The `sensornet` console command: one subcommand per part of the system.

Each subcommand is a module with `main(argv) -> int` and its own `--help`. Exit status 2 means
bad usage or bad configuration; the message names the key or flag and the fix.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__

SUBCOMMANDS = {
    "broker": ("sensornet.broker", "run Mosquitto with the repo's config (Debian binary, no Docker)"),
    "sim": ("virtual_huzzah.fleet", "run virtual Feather Huzzahs (the real firmware on MicroPython) against a broker"),
    "bridge": ("sensornet.bridge", "forward device messages from the broker to WebSocket and TCP endpoints"),
    "endpoint": ("sensornet.endpoint", "reference receiver: listen for WebSocket and TCP, print each reading"),
    "demo": ("sensornet.demo", "broker + three virtual boards + bridge + endpoint, readings printed live"),
    "cmd": ("sensornet.cmd", "send a remote command to a device (interval, identify, reboot, status), print its reply"),
    "dashboard": ("sensornet.dashboard", "serve a live dashboard with history, and Home Assistant discovery"),
    "client-id": ("sensornet.clientid", "print the client id a board will use, from its Wi-Fi MAC"),
}

USAGE = "usage: sensornet [--version] {" + ",".join(SUBCOMMANDS) + "} [--help] ...\n\n" + "\n".join(
    f"  {name:<9} {text}" for name, (_, text) in SUBCOMMANDS.items())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"sensornet {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"sensornet: unknown subcommand {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
