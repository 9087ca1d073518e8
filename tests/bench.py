"""Benchmarks (`make bench`): figures, printed with the machine they ran on. Not a test.

heap   free heap the firmware leaves on a virtual Feather Huzzah after publish cycles, as the
       firmware itself reports it (gc.mem_free() after gc.collect(), on its console)
bridge throughput of broker -> bridge -> endpoint, messages per second
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from sensornet.broker import Broker
from sensornet.endpoint import Endpoint
from tests.helpers import BRIDGE_PASSWORD, DEVICE_PASSWORD, Sensornet, device_config, free_port, wait_until
from virtual_huzzah.board import FIRMWARE_HEAP, MICROPYTHON_LIB_DIR, VirtualBoard, find_micropython, model_overhead


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mp = subprocess.run([find_micropython(), "-c", "import sys; print(sys.version)"], capture_output=True,
                        text=True).stdout.strip()
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, MicroPython {mp}"


def bench_heap(cycles: int = 10) -> None:
    models, umqtt = model_overhead(find_micropython(), MICROPYTHON_LIB_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with Broker(Path(tmp) / "broker", port=port, bind="127.0.0.1", accounts={"bridge": BRIDGE_PASSWORD}) as broker:
            board = VirtualBoard(Path(tmp) / "board", 0xC0FF01)
            board.config = device_config(board.client_id, port)
            broker.add_account(board.client_id, DEVICE_PASSWORD)
            board.start()
            try:
                wait_until(lambda: len(board.heap_free()) >= cycles, 60, f"{cycles} publish cycles", 0.2)
            finally:
                board.stop()
    free = board.heap_free()
    print(f"heap: VM heap {board.heap_bytes} B = firmware budget {FIRMWARE_HEAP} B (2 x the ESP8266's 38 KB, "
          f"64-bit VM) + models {models} B + umqtt.simple {umqtt} B (C and frozen on the board)")
    print(f"heap: free after {len(free)} publish cycles: min {min(free)} B, last {free[-1]} B; "
          f"firmware uses {FIRMWARE_HEAP - min(free)} B of its {FIRMWARE_HEAP} B "
          f"({100 * min(free) / FIRMWARE_HEAP:.0f}% free); "
          f"on a 32-bit ESP8266 about {min(free) // 2} B of 38 KB would stay free")


async def _bridge_throughput(n: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with Broker(Path(tmp) / "broker", port=port, bind="127.0.0.1",
                    accounts={"bridge": BRIDGE_PASSWORD, "huzzah-bench": "pw"}):
            async with Endpoint("127.0.0.1", 0, 0) as ep:
                env = dict(os.environ, SENSORNET_BRIDGE_PASSWORD=BRIDGE_PASSWORD)
                bridge = Sensornet("bridge", "--host", "127.0.0.1", "--port", str(port), "--endpoint", ep.ws_url,
                                   env=env)
                try:
                    # its subscriptions granted: from here on nothing published is lost to it
                    await asyncio.to_thread(bridge.wait_line, "subscribed:", "stderr", 30)
                    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="huzzah-bench")
                    client.username_pw_set("huzzah-bench", "pw")
                    client.max_inflight_messages_set(100)
                    client.connect("127.0.0.1", port)
                    client.loop_start()
                    t0 = time.perf_counter()
                    for i in range(n):
                        client.publish("sensors/huzzah-bench/tsl2561", b'{"lux": 1.0, "seq": %d}' % i, qos=1)
                    for _ in range(n):
                        await ep.get(30)
                    elapsed = time.perf_counter() - t0
                    client.loop_stop()
                    client.disconnect()
                finally:
                    await asyncio.to_thread(bridge.stop)
    print(f"bridge: {n} QoS 1 messages device -> broker -> bridge -> WebSocket endpoint in {elapsed:.2f} s: "
          f"{n / elapsed:.0f} messages/s")


def main() -> None:
    print(f"machine: {machine()}")
    bench_heap()
    asyncio.run(_bridge_throughput())


if __name__ == "__main__":
    main()
