"""Scale-out: two `sensornet bridge` processes (accounts bridge and bridge-2, one store each)
share the readings through the shared subscription $share/<group>/...; the union of what they
forward is complete, and when one is SIGKILLed the other carries on.

Mosquitto (2.0) keeps a killed member's persistent session in the group: its share of the
messages is queued for it (not lost, not given to the other) and arrives when it is back, which
systemd's Restart= sees to. (A clean session would hand everything to the survivor, but
Mosquitto drops what was in flight to the dead one: eclipse-mosquitto/mosquitto#2662.)"""

from __future__ import annotations

import pytest

from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, free_port, wait_until
from tests.test_bridge_delivery import DEVICE, Stream, arrived, bridge_process, check_complete, endpoint_on, kill9

pytestmark = pytest.mark.timeout(120)


def forwarded_by(proc) -> int:
    """Envelopes one bridge's endpoint delivered so far, from its `stopped:` line."""
    line = next(line for line in proc.stderr if "stopped:" in line)
    return int(line.split("delivered ")[1].split()[1].rstrip(";"))


def test_two_bridges_share_the_load_and_one_carries_on_when_the_other_is_killed(broker, tmp_path):
    broker.add_account(DEVICE, DEVICE_PASSWORD)
    broker.add_account("bridge-2", BRIDGE_PASSWORD)
    count, tcp_port = 6000, free_port()
    endpoint = endpoint_on(tcp_port)
    share = ("--share-group", "bridges")
    first = bridge_process(broker, tmp_path / "one", tcp_port, *share)
    second = bridge_process(broker, tmp_path / "two", tcp_port, *share, user="bridge-2")
    assert any("$share/bridges/sensors/+/+" in line for line in first.stderr if "subscribed:" in line)
    stream = Stream(broker.port, count, rate=3000).start()
    try:
        wait_until(lambda: len(arrived(endpoint)) >= 1500, 30, "1,500 readings at the endpoint")
        kill9(second)
        at_kill = len(arrived(endpoint))
        stream.thread.join(30)
        wait_until(lambda: len(stream.acked) == count, 30, "the broker acknowledged every reading")
        # the first bridge carries on alone with its share (about half of what was left)
        wait_until(lambda: len(arrived(endpoint)) - at_kill >= (count - at_kill) // 3, 30,
                   "the first bridge forwarding after the second was killed")
        # what the broker had handed the second bridge (in its store or in flight) arrives when
        # it comes back
        second = bridge_process(broker, tmp_path / "two", tcp_port, *share, user="bridge-2")
        wait_until(lambda: {e["payload"]["seq"] for e in arrived(endpoint)} >= stream.acked, 30,
                   "every acknowledged reading at the endpoint")
    finally:
        stream.close()
        first.stop()
        second.stop()
        endpoint.stop()
    check_complete(arrived(endpoint), stream.acked)
    assert forwarded_by(first) > 0
    assert forwarded_by(second) > 0  # the restarted second bridge delivered its share
