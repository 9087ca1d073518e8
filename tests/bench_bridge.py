"""Bridge benchmark (`make bench`): mosquitto_sub (the floor), the bridge and Node-RED 4, one at a
time on the same broker (the repo's config) and the same publisher. Figures, not a test.

Each consumer takes `sensors/+/+` at QoS 1 and hands every reading on:
  mosquitto_sub  prints the payloads (the floor: no envelope, no store, no second hop)
  bridge         `sensornet bridge` with its durable store on (SQLite WAL, synchronous=FULL)
                 -> WebSocket -> `sensornet endpoint --jsonl` (which acknowledges)
  Node-RED 4     mqtt in -> function (the envelope) -> websocket out (listening), a client here
                 (npm-installed into .cache/node-red by this script on first use)

Measured per consumer: throughput (20,000 readings published as fast as the broker takes them,
first publish to last arrival), CPU seconds of the consumer process per 10,000 readings in that
run (/proc/<pid>/stat utime + stime; the bridge's endpoint not included, as Node-RED's
WebSocket client is not), latency p50/p99 at 1,000 readings/s (5,000 readings; each carries its
publish time, compared at arrival here), peak RSS (VmHWM) of the consumer process.

`python -m tests.bench_bridge` runs all three; `--only bridge` (or mosquitto_sub, node-red; repeatable)
runs a subset, for iterating on one consumer (compare with a full run before drawing conclusions).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from websockets.sync.client import connect as ws_connect

from sensornet.broker import Broker, find_tool
from tests.helpers import BRIDGE_PASSWORD, REPO, Sensornet, free_port, wait_until

THROUGHPUT_N = 20_000
LATENCY_N, LATENCY_RATE = 5_000, 1_000
DEVICE, DEVICE_PW = "huzzah-00be0c40", "bench-device-pw"
NODE_RED_DIR = REPO / ".cache" / "node-red"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Arrivals:
    """Readings as they arrive at the far end: count and latency (s) from the publish time inside."""

    def __init__(self) -> None:
        self.count, self.latencies, self.last = 0, [], 0.0
        self._lock = threading.Lock()

    def add(self, sent: float) -> None:
        now = time.time()
        with self._lock:
            self.count += 1
            self.latencies.append(now - sent)
            self.last = now

    def reset(self) -> None:
        with self._lock:
            self.count, self.latencies, self.last = 0, [], 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def read_lines(stream, arrivals: Arrivals, sent_of: Callable[[str], float | None]) -> None:
    for line in stream:
        sent = sent_of(line)
        if sent is not None:
            arrivals.add(sent)


def _payload_t(line: str) -> float | None:
    try:
        return float(json.loads(line)["t"])
    except (ValueError, KeyError, TypeError):
        return None


def _envelope_t(line: str) -> float | None:
    try:
        return float(json.loads(line)["payload"]["t"])
    except (ValueError, KeyError, TypeError):
        return None


class Publisher:
    """The device: one paho client on its own account, QoS 1, 1000 in flight."""

    def __init__(self, port: int):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=DEVICE)
        self.client.username_pw_set(DEVICE, DEVICE_PW)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq = 0

    def publish(self, count: int, rate: float = 0) -> None:
        start = time.monotonic()
        for i in range(count):
            self.seq += 1
            payload = (b'{"lux":%.1f,"broadband":%d,"ir":20,"gain":16,"integration_ms":402,"seq":%d,"t":%.6f}'
                       % (10.5, self.seq % 65536, self.seq, time.time()))
            self.client.publish(f"sensors/{DEVICE}/tsl2561", payload, qos=1)
            if rate:
                delay = start + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def measure(name: str, pid: int, arrivals: Arrivals, publisher: Publisher) -> dict[str, float | str]:
    publisher.publish(200)  # warm-up
    wait_until(lambda: arrivals.count >= 200, 60, f"{name}: the warm-up readings")
    arrivals.reset()
    cpu0, t0 = cpu_s(pid), time.time()
    publisher.publish(THROUGHPUT_N)
    wait_until(lambda: arrivals.count >= THROUGHPUT_N, 300, f"{name}: {THROUGHPUT_N} readings", 0.01)
    rate = THROUGHPUT_N / (arrivals.last - t0)
    cpu = (cpu_s(pid) - cpu0) / THROUGHPUT_N * 10_000
    time.sleep(0.5)  # let the consumer settle before the paced run (a pause, not a synchronisation)
    arrivals.reset()
    publisher.publish(LATENCY_N, LATENCY_RATE)
    wait_until(lambda: arrivals.count >= LATENCY_N, 120, f"{name}: {LATENCY_N} paced readings", 0.01)
    lat = sorted(arrivals.latencies)
    return {"consumer": name, "msg_s": rate, "cpu_s_per_10k": cpu, "p50_ms": lat[len(lat) // 2] * 1e3,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1e3, "peak_rss_mb": peak_rss_mb(pid)}


@contextmanager
def mosquitto_sub(port: int, arrivals: Arrivals) -> Iterator[int]:
    proc = subprocess.Popen([find_tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port), "-u", "bridge-2",
                             "-P", BRIDGE_PASSWORD, "-i", "bridge-2", "-q", "1", "-t", "sensors/+/+"],
                            stdout=subprocess.PIPE, text=True)
    threading.Thread(target=read_lines, args=(proc.stdout, arrivals, _payload_t), daemon=True).start()
    try:
        time.sleep(1)  # mosquitto_sub says nothing when subscribed; the warm-up waits for arrivals anyway
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def bridge(port: int, arrivals: Arrivals, tmp: Path) -> Iterator[int]:
    endpoint = Sensornet("endpoint", "--host", "127.0.0.1", "--ws-port", "0", "--tcp-port", "0", "--jsonl",
                         "--log-level", "WARNING")
    proc = None
    try:
        ws_port = int(endpoint.wait_line("listening: ").split("ws://127.0.0.1:")[1].split()[0])
        threading.Thread(target=read_lines, args=(_follow(endpoint.stdout), arrivals, _envelope_t),
                         daemon=True).start()
        env = dict(os.environ, SENSORNET_BRIDGE_PASSWORD=BRIDGE_PASSWORD)
        env.pop("STATE_DIRECTORY", None)
        proc = Sensornet("bridge", "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(tmp / "bridge"),
                         "--endpoint", f"ws://127.0.0.1:{ws_port}", env=env)
        proc.wait_line("subscribed:", "stderr", 30)
        yield proc.process.pid
    finally:
        if proc is not None:
            proc.stop()
        endpoint.stop()


def _follow(lines: list[str]) -> Iterator[str]:
    """Yield the lines a Sensornet reader thread appends to `lines`, as they come."""
    i = 0
    while True:
        while i < len(lines):
            yield lines[i]
            i += 1
        time.sleep(0.0005)


FUNCTION = ("msg.payload = {topic: msg.topic, client_id: msg.topic.split('/')[1], kind: msg.topic.split('/')[2], "
            "payload: msg.payload, received_at: new Date().toISOString()}; return msg;")


def node_red_flow(port: int) -> list[dict]:
    return [
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(port), "clientid": "bridge-2",
         "protocolVersion": "4", "keepalive": "60", "cleansession": True, "autoConnect": True},
        {"id": "in", "type": "mqtt in", "z": "tab", "topic": "sensors/+/+", "qos": "1", "datatype": "json",
         "broker": "broker", "wires": [["fn"]]},
        {"id": "fn", "type": "function", "z": "tab", "func": FUNCTION, "outputs": 1, "wires": [["out"]]},
        {"id": "listener", "type": "websocket-listener", "path": "/ws/readings", "wholemsg": "false"},
        {"id": "out", "type": "websocket out", "z": "tab", "server": "listener", "wires": []},
    ]


def install_node_red() -> Path:
    red = NODE_RED_DIR / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        print("bench: installing Node-RED 4 with npm into .cache/node-red (once)", flush=True)
        NODE_RED_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "node-red@4"],
                       cwd=NODE_RED_DIR, check=True, stdout=subprocess.DEVNULL)
    return red


@contextmanager
def node_red(port: int, arrivals: Arrivals, tmp: Path) -> Iterator[int]:
    red, user_dir, http_port = install_node_red(), tmp / "node-red", free_port()
    user_dir.mkdir()
    (user_dir / "flows.json").write_text(json.dumps(node_red_flow(port)))
    (user_dir / "flows_cred.json").write_text(json.dumps({"broker": {"user": "bridge-2",
                                                                     "password": BRIDGE_PASSWORD}}))
    (user_dir / "settings.js").write_text(
        "module.exports = {flowFile: 'flows.json', credentialSecret: false, uiHost: '127.0.0.1', "
        "logging: {console: {level: 'info'}}, editorTheme: {tours: false}};\n")
    out = tmp / "node-red.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(["node", str(red), "--userDir", str(user_dir), "--port", str(http_port),
                                 "--settings", str(user_dir / "settings.js")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "Connected to broker" in out.read_text(), 60, "Node-RED connected to the broker")
        ws = ws_connect(f"ws://127.0.0.1:{http_port}/ws/readings", max_size=2 ** 20)

        def receive() -> None:
            for frame in ws:
                sent = _envelope_t(frame if isinstance(frame, str) else frame.decode())
                if sent is not None:
                    arrivals.add(sent)
        threading.Thread(target=receive, daemon=True).start()
        yield proc.pid
        ws.close()
    finally:
        proc.terminate()
        proc.wait(10)


CONSUMERS = ("mosquitto_sub", "bridge", "node-red")


def main(argv: list[str] | None = None) -> None:
    import argparse

    from tests.bench import machine

    parser = argparse.ArgumentParser(prog="python -m tests.bench_bridge")
    parser.add_argument("--only", action="append", choices=CONSUMERS, help="run only this consumer (repeatable)")
    only = set(parser.parse_args(argv).only or CONSUMERS)

    print(f"machine: {machine()}")
    if "node-red" in only and (not shutil.which("npm") or not shutil.which("node")):
        sys.exit("bench: Node-RED needs node and npm (apt-get install nodejs npm)")
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp, port = Path(tmpdir), free_port()
        accounts = {"bridge": BRIDGE_PASSWORD, "bridge-2": BRIDGE_PASSWORD, DEVICE: DEVICE_PW}
        with Broker(tmp / "broker", port=port, bind="127.0.0.1", accounts=accounts):
            publisher = Publisher(port)
            try:
                for key, name, consumer in (("mosquitto_sub", "mosquitto_sub", lambda a: mosquitto_sub(port, a)),
                                            ("bridge", "bridge", lambda a: bridge(port, a, tmp)),
                                            ("node-red", "Node-RED 4", lambda a: node_red(port, a, tmp))):
                    if key not in only:
                        continue
                    arrivals = Arrivals()
                    with consumer(arrivals) as pid:
                        results.append(measure(name, pid, arrivals, publisher))
                    print(f"bench: {name} done", flush=True)
            finally:
                publisher.close()
    print(f"bridge bench: {THROUGHPUT_N} QoS 1 readings as fast as published; latency at {LATENCY_RATE}/s "
          f"({LATENCY_N} readings); CPU of the consumer process only")
    print(f"| {'consumer':<14}| {'msg/s':>8} | {'CPU s / 10k':>11} | {'p50 ms':>7} | {'p99 ms':>7} "
          f"| {'peak RSS MB':>11} |")
    print(f"|{'-' * 15}|{'-' * 10}|{'-' * 13}|{'-' * 9}|{'-' * 9}|{'-' * 13}|")
    for r in results:
        print(f"| {r['consumer']:<14}| {r['msg_s']:>8.0f} | {r['cpu_s_per_10k']:>11.2f} | {r['p50_ms']:>7.2f} | "
              f"{r['p99_ms']:>7.2f} | {r['peak_rss_mb']:>11.1f} |")


if __name__ == "__main__":
    main()
