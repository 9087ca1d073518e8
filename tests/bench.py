"""Benchmarks (`make bench`): figures, printed with the machine they ran on. Not a test.

heap   on the 32-bit virtual Feather Huzzah, for the .py deployment (sources compiled on the
       board) and the .mpy one (`make firmware`): the smallest heap the firmware boots and runs
       10 publish cycles in, and the free heap at the ESP8266's 38 KB as the firmware itself
       reports it after each publish (gc.mem_free() after gc.collect(), on its console)
(The bridge's benchmark, against mosquitto_sub and Node-RED, is tests/bench_bridge.py.)
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sensornet.broker import Broker
from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, device_config, free_port
from virtual_huzzah.board import DEPLOY_DIR, FIRMWARE_DIR, VirtualBoard, client_id_for
from virtual_huzzah.runtime import ESP8266_HEAP, find_micropython, model_overhead


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


def _run_board(root: Path, port: int, firmware: Path, share: int | None, cycles: int) -> tuple[bool, list[int]]:
    """Run a board until `cycles` publishes (True) or it fails (False: out of memory, VM exit, 60 s)."""
    heap = None if share is None else share + model_overhead(find_micropython())
    board = VirtualBoard(root, 0xC0FF01, config=device_config(client_id_for(0xC0FF01), port),
                         firmware_dir=firmware, heap_bytes=heap)
    board.start()
    try:
        deadline = time.monotonic() + 60
        while len(board.heap_free()) < cycles and time.monotonic() < deadline and board.running:
            if "MemoryError" in board.console_text():
                break
            time.sleep(0.2)
        return len(board.heap_free()) >= cycles and "MemoryError" not in board.console_text(), board.heap_free()
    finally:
        board.stop()
        shutil.rmtree(root, ignore_errors=True)


def _smallest_heap(root: Path, port: int, firmware: Path, cycles: int, step: int = 256) -> int:
    """The smallest firmware heap share (bytes, a multiple of `step`) it boots and runs `cycles` publishes in."""
    low, high = 8 * 1024, ESP8266_HEAP  # low fails (checked below), high is the board's heap
    ok, _ = _run_board(root / "low", port, firmware, low, cycles)
    if ok:
        return low
    while high - low > step:
        mid = (low + high) // 2 // step * step
        ok, _ = _run_board(root / f"h{mid}", port, firmware, mid, cycles)
        low, high = (low, mid) if ok else (mid, high)
    return high



def bench_heap(cycles: int = 10) -> None:
    overhead = model_overhead(find_micropython())
    results: dict[str, tuple[int, list[int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        accounts = {"bridge": BRIDGE_PASSWORD, client_id_for(0xC0FF01): DEVICE_PASSWORD}
        with Broker(Path(tmp) / "broker", port=port, bind="127.0.0.1", accounts=accounts):
            def one(name: str, firmware: Path) -> None:
                root = Path(tmp) / name.strip(".")
                smallest = _smallest_heap(root, port, firmware, cycles)
                _, free = _run_board(root / "full", port, firmware, None, cycles)
                results[name] = (smallest, free)
            threads = [threading.Thread(target=one, args=item) for item in DEPLOYMENTS.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    print(f"heap: VM heap = the ESP8266's {ESP8266_HEAP} B + {overhead} B the hardware models keep (C on the board)")
    for name, (smallest, free) in results.items():
        low = min(free) if free else 0
        print(f"heap: {name:5} deployment: boots and runs {cycles} publish cycles in {smallest} B "
              f"({ESP8266_HEAP - smallest} B of 38 KB to spare); at 38 KB, free after each publish: "
              f"min {low} B ({100 * low / ESP8266_HEAP:.0f}%), last {free[-1] if free else 0} B")


def main() -> None:
    print(f"machine: {machine()}")
    bench_heap()


if __name__ == "__main__":
    main()
