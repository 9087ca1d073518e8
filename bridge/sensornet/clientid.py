"""`sensornet client-id --mac MAC`: the client id a Feather Huzzah will use, from its Wi-Fi MAC.

The firmware's rule is feather_huzzah.topics.client_id(machine.unique_id()). On the esp8266
port machine.unique_id() is the chip id as 4 bytes, little-endian, and the chip id is the
station MAC's last three bytes (the first three are Espressif's OUI). bootstrap.sh uses this
to name the board's broker account before the board has ever run the firmware.
"""

from __future__ import annotations

import argparse
import re
import sys

from feather_huzzah import topics

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def unique_id_from_mac(mac: str) -> bytes:
    """machine.unique_id() (4 bytes) of the ESP8266 whose station MAC is `mac` ("aa:bb:cc:dd:ee:ff",
    either case). Raises ValueError naming the expected form."""
    mac = mac.strip().lower()
    if not _MAC.fullmatch(mac):
        raise ValueError(f"MAC {mac!r}: expected six hex bytes like 5c:cf:7f:c0:ff:01")
    return bytes.fromhex(mac.replace(":", "")[6:])[::-1] + b"\x00"


def client_id_from_mac(mac: str) -> str:
    """The default client id (str) of the board with Wi-Fi MAC `mac`. Raises ValueError."""
    return topics.client_id(unique_id_from_mac(mac))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sensornet client-id", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mac", required=True, help="the board's Wi-Fi (station) MAC, aa:bb:cc:dd:ee:ff")
    args = parser.parse_args(argv)
    try:
        print(client_id_from_mac(args.mac))
    except ValueError as e:
        print(f"sensornet client-id: --mac: {e}", file=sys.stderr)
        return 2
    return 0
