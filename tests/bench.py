"""Benchmarks (`make bench`): figures, printed with the machine they ran on. Not a test.

heap   on the 32-bit virtual Feather Huzzah, for the .py deployment (sources compiled on the
       board) and the .mpy one (`make firmware`): the smallest heap the firmware boots and runs
       10 publish cycles in, and the free heap at the ESP8266's 38 KB as the firmware itself
       reports it after each publish (gc.mem_free() after gc.collect(), on its console)
heap per feature, .mpy deployment at 38 KB: the free heap after each publish with
       only the TSL2561 (no health but on connect, no NTP, no commands), then with each feature
       on alone and with all on: its cost is the drop in the lowest free heap; and the smallest
       heap everything-on boots and runs 10 publish cycles in
(The bridge's benchmark, against mosquitto_sub and Node-RED, is tests/bench_bridge.py.)
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from sensornet.broker import Broker
from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, device_config, free_port
from virtual_huzzah.board import DEPLOY_DIR, FIRMWARE_DIR, VirtualBoard, client_id_for
from virtual_huzzah.runtime import ESP8266_HEAP, find_micropython, model_overhead
from virtual_huzzah.sntp import SntpResponder


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mp = subprocess.run([find_micropython(), "-c", "import sys; print('%d.%d.%d' % sys.implementation.version[:3], "
                         "'%d-bit' % (32 if sys.maxsize < 2**32 else 64))"], capture_output=True, text=True).stdout
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"MicroPython unix port {mp.strip()} (the virtual boards' VM)")


DEPLOYMENTS = {".py": FIRMWARE_DIR, ".mpy": DEPLOY_DIR}  # sources compiled on the board / `make firmware`


CHIP_ID = 0xC0FF01  # the bench's boards: CHIP_ID, CHIP_ID + 1, ... (one client id, so one account, each)


def _run_board(root: Path, port: int, firmware: Path, share: int | None, cycles: int,
               feature: Feature | None = None, chip_id: int = CHIP_ID) -> tuple[bool, list[int]]:
    """Run a board until `cycles` publishes (True) or it fails (False: out of memory, VM exit, 60 s)."""
    heap = None if share is None else share + model_overhead(find_micropython())
    cid = client_id_for(chip_id)
    board = VirtualBoard(root, chip_id, config=device_config(cid, port, **(feature.config if feature else {})),
                         firmware_dir=firmware, heap_bytes=heap)
    if feature and feature.bme280:
        board.set_bme280(0x76)
    board.start()
    operator = None
    try:
        deadline = time.monotonic() + 60
        while len(board.heap_free()) < cycles and time.monotonic() < deadline and board.running:
            if "MemoryError" in board.console_text():
                break
            if feature and feature.commands and board.heap_free():  # connected: a command a second
                if operator is None:
                    operator = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator")
                    operator.username_pw_set("operator", OPERATOR_PASSWORD)
                    operator.connect("127.0.0.1", port)
                    operator.loop_start()
                operator.publish(f"cmd/{cid}/status", b"", qos=1)
                time.sleep(0.8)
            time.sleep(0.2)
        return len(board.heap_free()) >= cycles and "MemoryError" not in board.console_text(), board.heap_free()
    finally:
        if operator:
            operator.disconnect()
            operator.loop_stop()
        board.stop()
        shutil.rmtree(root, ignore_errors=True)


def _smallest_heap(root: Path, port: int, firmware: Path, cycles: int, step: int = 256,
                   feature: Feature | None = None, chip_id: int = CHIP_ID) -> int:
    """The smallest firmware heap share (bytes, a multiple of `step`) it boots and runs `cycles` publishes in."""
    low, high = 8 * 1024, ESP8266_HEAP  # low fails (checked below), high is the board's heap
    ok, _ = _run_board(root / "low", port, firmware, low, cycles, feature, chip_id)
    if ok:
        return low
    while high - low > step:
        mid = (low + high) // 2 // step * step
        ok, _ = _run_board(root / f"h{mid}", port, firmware, mid, cycles, feature, chip_id)
        low, high = (low, mid) if ok else (mid, high)
    return high



def bench_heap(cycles: int = 10) -> None:
    overhead = model_overhead(find_micropython())
    results: dict[str, tuple[int, list[int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        accounts = {"bridge": BRIDGE_PASSWORD, **{client_id_for(CHIP_ID + i): DEVICE_PASSWORD
                                                   for i in range(len(DEPLOYMENTS))}}
        with Broker(Path(tmp) / "broker", port=port, bind="127.0.0.1", accounts=accounts):
            def one(i: int, name: str, firmware: Path) -> None:  # a board of its own: the broker gives
                root = Path(tmp) / name.strip(".")                # one connection per client id
                smallest = _smallest_heap(root, port, firmware, cycles, chip_id=CHIP_ID + i)
                _, free = _run_board(root / "full", port, firmware, None, cycles, chip_id=CHIP_ID + i)
                results[name] = (smallest, free)
            threads = [threading.Thread(target=one, args=(i, *item)) for i, item in enumerate(DEPLOYMENTS.items())]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    print(f"heap: VM heap = the ESP8266's {ESP8266_HEAP} B + {overhead} B the hardware models keep (C on the board)")
    for name, (smallest, free) in results.items():
        if len(free) < cycles:  # the bisection assumes 38 KB works: here it did not
            print(f"heap: {name:5} deployment: does not run {cycles} publish cycles in the ESP8266's 38 KB "
                  f"({len(free)} published)")
            continue
        print(f"heap: {name:5} deployment: boots and runs {cycles} publish cycles in {smallest} B "
              f"({ESP8266_HEAP - smallest} B of 38 KB to spare); at 38 KB, free after each publish: "
              f"min {min(free)} B ({100 * min(free) / ESP8266_HEAP:.0f}%), last {free[-1]} B")


OPERATOR_PASSWORD = "bench-operator-password"


class Feature:
    """A firmware feature as the bench turns it on: config.json overrides, a BME280 on the bus,
    commands sent (`status`, one a second, as the operator account)."""

    def __init__(self, name: str, config: dict[str, object] | None = None, bme280: bool = False,
                 commands: bool = False):
        self.name, self.config, self.bme280, self.commands = name, dict(config or {}), bme280, commands


def bench_features(cycles: int = 10) -> None:
    base = {"health_every": 0, "ntp_host": None}
    with tempfile.TemporaryDirectory() as tmp, SntpResponder() as sntp:
        features = [Feature("TSL2561 only (the base)", base),
                     Feature("+ BME280 (driver, readings)", base, bme280=True),
                     Feature("+ health every reading", dict(base, health_every=1)),
                     Feature("+ NTP (clock set, ts)", dict(base, ntp_host=sntp.host)),
                     Feature("+ commands (status each second)", base, commands=True),
                     Feature("everything on", {"health_every": 1, "ntp_host": sntp.host}, bme280=True, commands=True)]
        port = free_port()
        accounts = {"bridge": BRIDGE_PASSWORD, "operator": OPERATOR_PASSWORD,
                    **{client_id_for(CHIP_ID + i): DEVICE_PASSWORD for i in range(len(features))}}
        results: dict[str, list[int]] = {}
        smallest: dict[str, int] = {}
        with Broker(Path(tmp) / "broker", port=port, bind="127.0.0.1", accounts=accounts):
            def one(i: int, f: Feature) -> None:
                _, results[f.name] = _run_board(Path(tmp) / f"f{i}", port, DEPLOY_DIR, None, cycles, f, CHIP_ID + i)
                smallest[f.name] = _smallest_heap(Path(tmp) / f"s{i}", port, DEPLOY_DIR, cycles, feature=f,
                                                  chip_id=CHIP_ID + i)
            # two cores: at most three boards at a time; the two sending commands not together, as
            # both log in as `operator` (one connection per account: the broker gives it the client id)
            for batch in (features[:3], features[3:5], features[5:]):
                threads = [threading.Thread(target=one, args=(features.index(f), f)) for f in batch]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
    # The smallest heap: the peak a feature adds. It is found by bisection on "ran 10 cycles without
    # MemoryError", which fragmentation and timing make fuzzy near the edge: +-1-2 KB from run to
    # run. The free heap after a publish at 38 KB moves with what the other tasks hold at that
    # moment (a driver loaded mid-reading, the outbox): its lowest, median and highest.
    print("heap: per feature, .mpy deployment: the smallest heap it boots and runs "
          f"{cycles} publish cycles in (over the base), and at 38 KB the free heap after a publish")
    base = smallest[features[0].name]
    for f in features:
        share, free = smallest[f.name], sorted(results[f.name])
        cost = "" if f is features[0] else f" (+{share - base} B)"
        at_38k = (f"lowest {free[0]} B, median {statistics.median_low(free)} B, highest {free[-1]} B" if free
                  else "no figure (the board at 38 KB published nothing in time)")
        print(f"heap: {f.name:33} {share:6} B{cost:10}  free at 38 KB: {at_38k}")


def main() -> None:
    print(f"machine: {machine()}")
    bench_heap()
    bench_features()


if __name__ == "__main__":
    main()
