"""Where the repository's non-Python parts live.

sensornet is installed editable from its checkout (`make setup`, the README), so the broker
configuration, bootstrap.sh and the state directory are found relative to this file.
SENSORNET_HOME overrides the checkout's location for other installs.
"""

import os
from pathlib import Path

REPO = Path(os.environ.get("SENSORNET_HOME") or Path(__file__).resolve().parents[2])
BROKER_DIR = REPO / "broker"
STATE_DIR = REPO / ".sensornet"
