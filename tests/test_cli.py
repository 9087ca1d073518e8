"""The `sensornet` console command's own options and the small subcommands, run as a user runs them."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from tests.helpers import run_sensornet


def test_version():
    result = run_sensornet("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sensornet {version('sensornet')}\n"
    assert re.fullmatch(r"sensornet \d+\.\d+\.\d+\S*\n", result.stdout)
    assert result.stderr == ""


@pytest.mark.parametrize("mac", ["5C:CF:7F:C0:FF:01", "5c:cf:7f:c0:ff:01"])
def test_client_id_from_a_mac(mac):
    result = run_sensornet("client-id", "--mac", mac)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "huzzah-01ffc000\n"  # "huzzah-" + unique_id(): the chip id c0ff01, little-endian
    assert result.stderr == ""


@pytest.mark.parametrize("mac", ["5C:CF:7F:C0:FF", "5C:CF:7F:C0:FF:0G", "5ccf7fc0ff01", ""])
def test_client_id_with_a_bad_mac_exits_2_naming_mac(mac):
    result = run_sensornet("client-id", "--mac", mac)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("sensornet client-id: --mac: ")
    assert "5c:cf:7f:c0:ff:01" in result.stderr  # the form it expects


def test_client_id_without_mac_exits_2_naming_mac():
    result = run_sensornet("client-id")
    assert result.returncode == 2
    assert "--mac" in result.stderr


def test_unknown_subcommand_exits_2():
    result = run_sensornet("bogus")
    assert result.returncode == 2
    assert "unknown subcommand 'bogus'" in result.stderr


def test_sim_help_shows_the_default_broker_host():
    result = run_sensornet("sim", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps the help to the terminal's width
    option = re.search(r"--broker-host BROKER_HOST (.*?) --broker-port", text)
    assert option, result.stdout
    assert "(default 127.0.0.1)" in option[1]
