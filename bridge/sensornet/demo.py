"""`sensornet demo`: the whole chain on one machine, on real parts.

Mosquitto (the repo's config, generated demo credentials) <- three virtual Feather Huzzahs at
different light levels (the real firmware on MicroPython) -> the bridge -> the reference
endpoint (WebSocket and TCP), whose lines are printed live; and the dashboard (`sensornet
dashboard`, on http://127.0.0.1:8080/ or a free port; its URL is printed). With --duration it stops by itself
and exits 0 only if TSL2561 readings from every board reached the endpoint over both
WebSocket and TCP; otherwise it runs until Ctrl-C. Logs of every part go to the state directory.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import childproc
from feather_huzzah import topics

from . import paths
from .broker import Broker, BrokerError, free_port, port_taken, wait_for_port

if TYPE_CHECKING:  # imported when run: virtual_huzzah is reached only by the demo and `sim`
    from virtual_huzzah.board import VirtualBoard

HOST = "127.0.0.1"


def _sensornet(*args: str) -> list[str]:
    return [sys.executable, "-m", "sensornet.cli", *args]


def _lines(stream: IO[bytes], out: queue.Queue[str | None]) -> None:
    for raw in stream:
        out.put(raw.decode("utf-8", "replace").rstrip("\n"))
    out.put(None)


def _drift_light(boards: list[VirtualBoard], stopping: threading.Event, period_s: float = 60.0) -> None:
    """Let each board's light wander +-15 % around its level, as a room's does over a minute."""
    base = [b.lux for b in boards]
    t0 = time.monotonic()
    while not stopping.wait(2.0):
        t = time.monotonic() - t0
        for i, b in enumerate(boards):
            b.set_light(round(base[i] * (1 + 0.15 * math.sin(2 * math.pi * t / period_s + i)), 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sensornet demo", description=__doc__.split("\n\n")[0] + " " +
                                     "Starts a broker, virtual boards, the bridge and the endpoint, then prints "
                                     "the forwarded readings live until Ctrl-C.")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds; exit 0 only if every board's readings arrived")
    parser.add_argument("--count", type=int, default=3, help="number of virtual boards (default 3)")
    parser.add_argument("--interval", type=float, default=2.0, help="the boards' publish_interval_s (default 2)")
    parser.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    parser.add_argument("--micropython", default=None, help="micropython unix-port binary (see `sensornet sim`)")
    parser.add_argument("--state-dir", type=Path, default=paths.STATE_DIR / "demo",
                        help="logs, credentials and the boards' filesystems (default .sensornet/demo; wiped at start)")
    args = parser.parse_args(argv)
    if args.count < 1:
        print("sensornet demo: --count must be at least 1", file=sys.stderr)
        return 2

    from virtual_huzzah.board import BoardError
    from virtual_huzzah.fleet import make_fleet

    os.umask(0o077)  # the boards' config.json, credentials.txt and the broker's password file: owner only
    state = args.state_dir
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    port = args.port or free_port(HOST)
    ws_port, tcp_port = free_port(HOST), free_port(HOST)
    dashboard_port = free_port(HOST) if port_taken(HOST, 8080) else 8080
    bridge_password, device_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    dashboard_password = secrets.token_urlsafe(12)
    monitor_password, operator_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    try:
        boards = make_fleet(state / "boards", args.count, HOST, port, device_password,
                            interval_s=args.interval, micropython=args.micropython)
    except BoardError as e:
        print(f"sensornet demo: {e}", file=sys.stderr)
        return 2
    from virtual_huzzah.sntp import SntpResponder

    try:  # the boards set their clocks from it (loopback): readings carry "ts"
        sntp: SntpResponder | None = SntpResponder()
    except OSError as e:
        sntp = None
        print(f"sensornet demo: no SNTP responder on port 123 ({e}): readings without ts", file=sys.stderr)
    for b in boards:
        if sntp and isinstance(b.config, dict):
            b.config["ntp_host"] = sntp.host
    accounts = {"bridge": bridge_password, "dashboard": dashboard_password, "monitor": monitor_password,
                "operator": operator_password,
                **{b.client_id: device_password for b in boards}}
    (state / "credentials.txt").write_text("".join(f"{k} {v}\n" for k, v in accounts.items()))
    (state / "credentials.txt").chmod(0o600)

    broker = Broker(state / "broker", port=port, bind=HOST, accounts=accounts)
    endpoint: subprocess.Popen[bytes] | None = None
    bridge: subprocess.Popen[bytes] | None = None
    dashboard: subprocess.Popen[bytes] | None = None
    seen: dict[str, set[str]] = {b.client_id: set() for b in boards}
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        broker.start()
        with open(state / "endpoint.log", "wb") as log:  # the child keeps its own descriptor of the file
            endpoint = subprocess.Popen(_sensornet("endpoint", "--host", HOST, "--ws-port", str(ws_port),
                                                   "--tcp-port", str(tcp_port)), stdout=subprocess.PIPE, stderr=log)
        if not (wait_for_port(HOST, ws_port, 15) and wait_for_port(HOST, tcp_port, 5)):
            raise RuntimeError(f"the endpoint did not start; see {state / 'endpoint.log'}")
        with open(state / "bridge.log", "wb") as log:
            bridge = subprocess.Popen(
                _sensornet("bridge", "--host", HOST, "--port", str(port), "--username", "bridge",
                           "--endpoint", f"ws://{HOST}:{ws_port}/", "--endpoint", f"tcp://{HOST}:{tcp_port}"),
                env=dict(os.environ, SENSORNET_BRIDGE_PASSWORD=bridge_password), stdout=log, stderr=subprocess.STDOUT)
        with open(state / "dashboard.log", "wb") as log:
            dashboard = subprocess.Popen(
                _sensornet("dashboard", "--port", str(dashboard_port), "--mqtt-port", str(port),
                           "--db", str(state / "dashboard.sqlite3")),
                env=dict(os.environ, SENSORNET_DASHBOARD_PASSWORD=dashboard_password), stdout=log,
                stderr=subprocess.STDOUT)
        if not wait_for_port(HOST, dashboard_port, 15):
            raise RuntimeError(f"the dashboard did not start; see {state / 'dashboard.log'}")
        for b in boards:
            b.start()
        print(f"sensornet demo: dashboard http://{HOST}:{dashboard_port}/", flush=True)
        # no password on the terminal nor in a command line: mosquitto_sub reads them from its options file
        (state / "mosquitto_sub").write_text(f"-u monitor\n-P {monitor_password}\n")
        print(f"sensornet demo: broker 127.0.0.1:{port} (watch: XDG_CONFIG_HOME={state} mosquitto_sub -h {HOST} "
              f"-p {port} -t '#' -v; passwords in {state / 'credentials.txt'}), endpoint ws://{HOST}:{ws_port}/ "
              f"tcp://{HOST}:{tcp_port}", flush=True)
        for b in boards:
            print(f"sensornet demo: virtual Feather Huzzah {b.client_id} (MAC {b.mac}) at {b.lux:g} lux", flush=True)
        print(f"sensornet demo: logs in {state}; readings as the endpoint prints them "
              f"(received_at via topic payload){'' if args.duration else ', Ctrl-C to stop'}:", flush=True)

        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_lines, args=(endpoint.stdout, lines), daemon=True).start()
        threading.Thread(target=_drift_light, args=(boards, stopping), daemon=True).start()
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stopping.is_set():
            timeout = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if timeout <= 0:
                break
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                if bridge.poll() is not None or broker.process is None or broker.process.poll() is not None:
                    raise RuntimeError(f"a part of the chain exited; see the logs in {state}") from None
                continue
            if line is None:
                raise RuntimeError(f"the endpoint exited; see {state / 'endpoint.log'}")
            print(line, flush=True)
            fields = line.split(maxsplit=3)
            if len(fields) == 4:
                for cid, via in seen.items():
                    if fields[2] == topics.sensor(cid, topics.TSL2561):
                        via.add(fields[1])
    except KeyboardInterrupt:
        pass
    except (BrokerError, BoardError, RuntimeError) as e:
        print(f"sensornet demo: {e}", file=sys.stderr)
        return 1
    finally:
        stopping.set()
        for b in boards:
            b.stop()
        childproc.stop(bridge)
        childproc.stop(dashboard)
        childproc.stop(endpoint)
        broker.stop()
        if sntp:
            sntp.close()

    missing = [cid for cid, via in seen.items() if not {"ws", "tcp"} <= via]
    for cid, via in seen.items():
        print(f"sensornet demo: {cid}: readings arrived over {', '.join(sorted(via)) or 'nothing'}")
    if missing:
        print(f"sensornet demo: FAILED: no readings over both WebSocket and TCP from {', '.join(missing)}",
              file=sys.stderr)
        return 1
    print(f"sensornet demo: OK: readings from all {len(seen)} boards reached the endpoint over WebSocket and TCP")
    return 0
