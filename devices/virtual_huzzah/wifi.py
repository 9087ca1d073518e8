"""The host side of the virtual board's Wi-Fi: the access point in range, and cutting a board's
TCP connections when it goes away (as a real radio losing its access point does to the sockets).
The board's side is vm/network.py."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from .runtime import BoardError


@dataclass(frozen=True)
class AccessPoint:
    """The simulated Wi-Fi access point in range: SSID and WPA2 passphrase (str), and its signal
    at the board (dBm, what WLAN.status("rssi") reports while associated)."""

    ssid: str = "sensornet-sim"
    password: str = "virtual-ap-password"
    rssi_dbm: int = -60


def cut_tcp_connections(pid: int) -> int:
    """Abort every TCP connection of process `pid` (iproute2's `ss -K`, which needs CAP_NET_ADMIN);
    return how many were found. Raises BoardError when `ss` is missing or may not do it."""
    ss = shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin")
    if not ss:
        raise BoardError("`ss` not found: install iproute2 (the Wi-Fi model aborts a board's connections with it)")
    listing = subprocess.run([ss, "-tnpH", "state", "established"], capture_output=True, text=True, check=True)
    found = 0
    for line in listing.stdout.splitlines():
        fields = line.split()
        if f"pid={pid}," not in line or len(fields) < 4:
            continue
        (local_host, local_port), (peer_host, peer_port) = (f.rsplit(":", 1) for f in fields[2:4])
        result = subprocess.run([ss, "-K", "src", local_host, "sport", "=", f":{local_port}",
                                 "dst", peer_host, "dport", "=", f":{peer_port}"], capture_output=True, text=True)
        if result.returncode != 0:
            raise BoardError(f"ss -K could not abort {fields[2]} -> {fields[3]}: {result.stderr.strip()}")
        found += 1
    return found


def access_point_state(ap: AccessPoint | None) -> dict | None:
    """The access point as hw/state.json carries it to vm/network.py (dict), None for none in range."""
    return None if ap is None else {"ssid": ap.ssid, "password": ap.password, "rssi_dbm": ap.rssi_dbm}
