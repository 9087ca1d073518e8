"""Where the repository's non-Python parts live.

sensornet is installed editable from its checkout (`make test`, `make demo`, the README), so
the firmware, the broker configuration and the fetched MicroPython libraries are found relative
to this file. SENSORNET_HOME overrides the checkout's location for other installs.
"""

import os
from pathlib import Path

REPO = Path(os.environ.get("SENSORNET_HOME") or Path(__file__).resolve().parents[2])
BROKER_DIR = REPO / "broker"
FIRMWARE_DIR = REPO / "devices" / "feather_huzzah"
# Set-up fetches umqtt.simple here (never committed): scripts/fetch-micropython-libs.sh
MICROPYTHON_LIB_DIR = REPO / ".cache" / "micropython-lib"
STATE_DIR = REPO / ".sensornet"
