"""Shared fixtures: a real Mosquitto running the repo's broker config on a free loopback port."""

from __future__ import annotations

import socket

import pytest

from sensornet.broker import Broker

BRIDGE_PASSWORD = "bridge-test-password"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto with broker/mosquitto.conf and broker/acl, account `bridge` only.

    Add device accounts with `broker.add_account(client_id, password)`.
    """
    with Broker(tmp_path / "broker", port=free_port(), bind="127.0.0.1",
                accounts={"bridge": BRIDGE_PASSWORD}) as b:
        yield b
