"""What a virtual board's ESP8266 chip id determines: machine.unique_id(), the MAC, the client id."""

from __future__ import annotations

from feather_huzzah import topics

ESPRESSIF_OUI = "5ccf7f"


def unique_id_for(chip_id: int) -> bytes:
    """machine.unique_id() of a board with this chip id: on the esp8266 port the chip id's 4
    bytes, little-endian (bytes)."""
    return chip_id.to_bytes(4, "little")


def client_id_for(chip_id: int) -> str:
    """The client id the firmware derives on a board with this chip id (str), by topics.py's rule."""
    return topics.client_id(unique_id_for(chip_id))


def mac_for(chip_id: int) -> str:
    """The station MAC of a board with this chip id: 5c:cf:7f + the chip id (str, colon-separated)."""
    return ":".join(f"{b:02x}" for b in bytes.fromhex(ESPRESSIF_OUI) + chip_id.to_bytes(3, "big"))
