"""At-least-once end to end, with real processes: a device publishing a stream of QoS 1 readings
(paho), Mosquitto with the repo's config, `sensornet bridge` and `sensornet endpoint --jsonl` as
child processes, each killed with SIGKILL mid-stream. What the endpoint printed is checked
against what the broker acknowledged to the device: every acknowledged reading arrives, and a
reading that arrives twice carries the same id both times.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, Sensornet, free_port, wait_until

pytestmark = pytest.mark.timeout(150)

DEVICE = "huzzah-00d1ce00"
TOPIC = f"sensors/{DEVICE}/tsl2561"


class Stream:
    """A device (paho, its own account) publishing `count` QoS 1 readings in a thread, `rate` per
    second at most (0: as fast as the broker takes them); `acked` is the set of seqs the broker
    acknowledged (PUBACK)."""

    def __init__(self, port: int, count: int, rate: float = 0):
        self.count, self.rate = count, rate
        self._sent: list[tuple[int, int]] = []  # (seq, mid); mids are unique below 65,536 messages
        self._pubacked: set[int] = set()  # mids; filled by paho's thread (no lock: publish() holds paho's)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE, clean_session=False)
        self.client.username_pw_set(DEVICE, DEVICE_PASSWORD)
        self.client.max_inflight_messages_set(200)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_publish = lambda client, userdata, mid, *rest: self._pubacked.add(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def acked(self) -> set[int]:
        return {seq for seq, mid in list(self._sent) if mid in self._pubacked}

    def _run(self) -> None:
        start = time.monotonic()
        for seq in range(self.count):
            payload = json.dumps({"lux": 10.5, "broadband": seq % 65536, "ir": 20, "gain": 16,
                                  "integration_ms": 402, "seq": seq, "ts": 1795271400 + seq})
            self._sent.append((seq, self.client.publish(TOPIC, payload, qos=1).mid))
            if self.rate:
                delay = start + (seq + 1) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def arrived(endpoint: Sensornet) -> list[dict]:
    return [json.loads(line) for line in list(endpoint.stdout) if line.startswith("{")]


def check_complete(envelopes: list[dict], acked: set[int]) -> None:
    """Every acknowledged seq arrived; duplicates carry the same id and payload."""
    by_seq: dict[int, set[str]] = {}
    for env in envelopes:
        by_seq.setdefault(env["payload"]["seq"], set()).add(env["id"])
    missing = sorted(acked - set(by_seq))
    assert not missing, f"{len(missing)} acknowledged readings never arrived, e.g. {missing[:10]}"
    assert all(len(ids) == 1 for ids in by_seq.values()), "a reading arrived twice with different ids"
    assert len({env["id"] for env in envelopes}) == len(by_seq)


def bridge_process(broker, state_dir, tcp_port: int, *flags: str, user: str = "bridge") -> Sensornet:
    proc = Sensornet("bridge", "--host", "127.0.0.1", "--port", str(broker.port), "--username", user,
                     "--state-dir", str(state_dir), "--endpoint", f"tcp://127.0.0.1:{tcp_port}", *flags,
                     env=_env())
    proc.wait_line("subscribed:", "stderr", 20)
    return proc


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
    env["SENSORNET_BRIDGE_PASSWORD"] = BRIDGE_PASSWORD
    return env


def kill9(proc: Sensornet) -> None:
    proc.process.send_signal(signal.SIGKILL)
    proc.wait(10)


def endpoint_on(tcp_port: int) -> Sensornet:
    proc = Sensornet("endpoint", "--host", "127.0.0.1", "--ws-port", "0", "--tcp-port", str(tcp_port), "--jsonl")
    proc.wait_line("listening: ", "stderr", 15)
    return proc


def test_bridge_and_endpoint_killed_mid_stream_every_acknowledged_reading_arrives(broker, tmp_path):
    """20,000 readings; the endpoint SIGKILLed twice, the bridge SIGKILLed 3 times while the
    endpoint is down (what it acknowledged to the broker then is only in its store)."""
    broker.add_account(DEVICE, DEVICE_PASSWORD)
    count, tcp_port, state = 20_000, free_port(), tmp_path / "state"
    endpoints: list[Sensornet] = [endpoint_on(tcp_port)]
    bridge = bridge_process(broker, state, tcp_port)
    stream = Stream(broker.port, count, rate=4000).start()
    received: list[dict] = []
    restarts: list[Sensornet] = []
    try:
        wait_until(lambda: len(arrived(endpoints[-1])) >= 2000, 30, "2,000 readings at the endpoint")
        kill9(endpoints[-1])                                   # endpoint down ...
        received += arrived(endpoints[-1])
        for _ in range(3):                                     # ... around 3 bridge kills
            acked_before = len(stream.acked)
            wait_until(lambda b=acked_before: len(stream.acked) >= b + 1500, 30, "more readings published")
            kill9(bridge)
            bridge = bridge_process(broker, state, tcp_port)
            restarts.append(bridge)
        endpoints.append(endpoint_on(tcp_port))
        wait_until(lambda: len(arrived(endpoints[-1])) >= 1000, 30, "readings after the endpoint's restart")
        kill9(endpoints[-1])                                   # endpoint kill -9 during the stream
        received += arrived(endpoints[-1])
        endpoints.append(endpoint_on(tcp_port))
        stream.thread.join(60)
        wait_until(lambda: len(stream.acked) == count, 30, "the broker acknowledged every reading")
        wait_until(lambda: {e["payload"]["seq"] for e in received + arrived(endpoints[-1])} >= stream.acked,
                   60, "every acknowledged reading at the endpoint")
        received += arrived(endpoints[-1])
    finally:
        stream.close()
        bridge.stop()
        for proc in endpoints:
            proc.stop()
    check_complete(received, stream.acked)
    assert len(received) >= count
    # each restarted bridge found what its predecessor had acknowledged to the broker in the store
    held = [int(line.split("(")[-1].split()[0]) for proc in restarts for line in proc.stderr if "starting:" in line]
    assert len(held) == 3
    assert all(n > 0 for n in held), held


def test_broker_restart_mid_stream_loses_nothing(broker, tmp_path):
    broker.add_account(DEVICE, DEVICE_PASSWORD)
    count, tcp_port = 4000, free_port()
    endpoint = endpoint_on(tcp_port)
    bridge = bridge_process(broker, tmp_path / "state", tcp_port)
    stream = Stream(broker.port, count, rate=2000).start()
    try:
        wait_until(lambda: len(arrived(endpoint)) >= 1000, 30, "1,000 readings at the endpoint")
        broker.stop()          # SIGTERM: Mosquitto saves its sessions and queues
        broker.start()
        stream.thread.join(60)
        wait_until(lambda: len(stream.acked) == count, 30, "the broker acknowledged every reading")
        wait_until(lambda: {e["payload"]["seq"] for e in arrived(endpoint)} >= stream.acked, 60,
                   "every acknowledged reading at the endpoint")
    finally:
        stream.close()
        bridge.stop()
        endpoint.stop()
    check_complete(arrived(endpoint), stream.acked)


def test_poison_payloads_are_rejected_and_neighbours_delivered(broker, tmp_path):
    broker.add_account(DEVICE, DEVICE_PASSWORD)
    tcp_port = free_port()
    endpoint = endpoint_on(tcp_port)
    bridge = bridge_process(broker, tmp_path / "state", tcp_port)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE)
    client.username_pw_set(DEVICE, DEVICE_PASSWORD)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        poison = [b'{"lux": 1e999, "seq": -1}', b"[" * 985 + b"]" * 985, b'{"a":' * 990 + b"1" + b"}" * 990,
                  b'{"lux": -1e999}', b"\xff\xfe", b"{"]
        for i, bad in enumerate(poison):
            client.publish(TOPIC, json.dumps({"seq": i, "lux": 1.0}), qos=1).wait_for_publish(5)
            client.publish(TOPIC, bad, qos=1).wait_for_publish(5)
        client.publish(TOPIC, json.dumps({"seq": 99, "lux": 1.0}), qos=1).wait_for_publish(5)
        wait_until(lambda: len(arrived(endpoint)) >= len(poison) + 1, 15, "the good readings")
        assert [e["payload"]["seq"] for e in arrived(endpoint)] == [*range(len(poison)), 99]
        assert bridge.stop() == 0  # SIGTERM: a clean stop, whatever it was fed
    finally:
        client.loop_stop()
        client.disconnect()
        bridge.stop()
        endpoint.stop()
    assert sum("sensornet.bridge: rejected " in line for line in bridge.stderr) == len(poison)
    assert any(f"{len(poison)} rejected" in line for line in bridge.stderr if "stopped:" in line)
