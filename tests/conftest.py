"""Fixtures only: a real Mosquitto running the repo's broker config on a free loopback port, a test
subscriber on it, and virtual boards. The helpers they are built from are in tests/helpers.py."""

from __future__ import annotations

import subprocess

import pytest

from sensornet.broker import Broker
from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, MONITOR_PASSWORD, Subscriber, device_config, free_port
from virtual_huzzah.board import VirtualBoard, client_id_for
from virtual_huzzah.runtime import REPO


@pytest.fixture(scope="session", autouse=True)
def deployed_firmware():
    """build/firmware made from the firmware's sources as they are now (what `make firmware` does),
    so the virtual boards never run a stale build."""
    subprocess.run([str(REPO / "scripts" / "build-firmware.sh")], check=True, capture_output=True)


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto with broker/mosquitto.conf and broker/acl, accounts `bridge` and `monitor`.

    Add device accounts with `broker.add_account(client_id, password)`.
    """
    with Broker(tmp_path / "broker", port=free_port(), bind="127.0.0.1",
                accounts={"bridge": BRIDGE_PASSWORD, "monitor": MONITOR_PASSWORD}) as b:
        yield b


@pytest.fixture
def subscriber(broker):
    """A Subscriber on the read-only `monitor` account to every topic (#) of the test broker.

    Not on `bridge`: the broker names a connection after its account (use_username_as_clientid),
    so it would take over the session of a bridge under test."""
    s = Subscriber(broker.port, username="monitor", password=MONITOR_PASSWORD)
    yield s
    s.close()


@pytest.fixture
def make_board(tmp_path):
    """Factory: make_board(chip_id, port=None, **VirtualBoard kwargs) -> a started VirtualBoard.

    With `port`, the board gets a config for the test broker (and its account must exist: pass
    broker= to have it added). Every board is powered off at teardown.
    """
    made = []

    def make(chip_id: int = 0xC0FF01, port: int | None = None, broker=None, start: bool = True, **kwargs):
        client_id = client_id_for(chip_id)
        if port is not None and "config" not in kwargs:
            kwargs["config"] = device_config(client_id, port)
        if broker is not None:
            broker.add_account(client_id, DEVICE_PASSWORD)
        board = VirtualBoard(tmp_path / client_id, chip_id, **kwargs)
        made.append(board)
        return board.start() if start else board

    yield make
    for b in made:
        b.stop()
