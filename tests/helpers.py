"""What the tests (and tests/bench.py) share: waiting, a test subscriber, the `sensornet` command as
a child process, MicroPython runs, a board's config and the test accounts' passwords.

conftest.py holds only fixtures, built from these; test modules import from here, never from
conftest. Nothing here sleeps to synchronise: the waits poll for something observable (a
message, a console or output line, a port) and fail naming what they waited for.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import paho.mqtt.client as mqtt

import childproc
from sensornet.broker import free_port, wait_for_port
from virtual_huzzah import leds
from virtual_huzzah.board import FIRMWARE_DIR, AccessPoint, VirtualBoard
from virtual_huzzah.runtime import MICROPYTHON_LIB_DIR, VM_DIR, find_micropython

__all__ = [
    "BRIDGE_PASSWORD", "DEVICE_PASSWORD", "MONITOR_PASSWORD", "REPO", "SENSORNET", "Sensornet", "Subscriber",
    "codes_from_dark", "device_config", "free_port", "led_dark_for", "run_micropython", "run_sensornet",
    "sensornet_command", "stop_process", "wait_code", "wait_for_port", "wait_until", "wait_until_async",
]

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]  # the checkout: tests/ is at its top
# the console script pip installed beside this Python (.venv/bin/sensornet), as a user runs it
SENSORNET = Path(sys.executable).parent / "sensornet"

BRIDGE_PASSWORD = "bridge-test-password"  # the `bridge` account of every test broker
DEVICE_PASSWORD = "device-test-password"  # device accounts made by the tests
MONITOR_PASSWORD = "monitor-test-password"  # the read-only `monitor` account of every test broker

# The one way the tests stop a child process: SIGTERM, a bounded wait, SIGKILL (childproc).
stop_process = childproc.stop


# ---- waiting ----

def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `predicate()` until it returns something truthy; return that.

    Raises AssertionError naming `what` after `timeout` seconds. The sleep between polls is the
    polling interval, not a synchronisation.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], T], seconds: float, what: str, interval: float = 0.01) -> T:
    """wait_until() for coroutines: polls without blocking the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(interval)


# ---- MQTT ----

class Subscriber:
    """A real MQTT client (paho) subscribed on the test broker; collects every message it gets.

    messages: list of (topic str, payload bytes, retain bool, qos int), in arrival order.
    """

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), username: str = "bridge",
                 password: str = BRIDGE_PASSWORD, client_id: str | None = None, clean_session: bool = True):
        self.messages: list[tuple[str, bytes, bool, int]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=clean_session,
                                  client_id=client_id or f"test-{uuid.uuid4().hex[:8]}")
        self.client.reconnect_delay_set(0.2, 1)
        self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), msg.qos))

    def on(self, topic: str) -> list[tuple[str, bytes, bool, int]]:
        with self._lock:
            return [m for m in self.messages if m[0] == topic]

    def wait_for(self, topic: str, timeout: float = 15, count: int = 1) -> list[tuple[str, bytes, bool, int]]:
        """The first `count` messages on `topic`, waiting up to `timeout` s for them."""
        return wait_until(lambda: len(self.on(topic)) >= count and self.on(topic)[:count], timeout,
                          f"{count} message(s) on {topic}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ---- the `sensornet` command ----

def sensornet_command(*args: str) -> list[str]:
    """argv (list of str) running `sensornet ARGS...`."""
    return [str(SENSORNET), *args]


def run_sensornet(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `sensornet ARGS...` to its end; stdout and stderr captured as text."""
    return subprocess.run(sensornet_command(*args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


class Sensornet:
    """`sensornet ARGS...` running as a child process; threads collect its stdout and stderr lines.

    stdout, stderr: the lines (str, no newline) so far. stop() ends it with childproc.stop.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.args = args
        self.process = subprocess.Popen(sensornet_command(*args), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def _ended(self) -> str:
        self._join_readers()
        return (f"`sensornet {' '.join(self.args)}` exited with status {self.process.returncode}; "
                f"stderr:\n" + "\n".join(self.stderr[-30:]))

    def wait_line(self, text: str, stream: str = "stderr", timeout: float = 15) -> str:
        """The first line of `stream` ("stdout" or "stderr") containing `text`, waiting for it.

        Raises AssertionError after `timeout` s, or as soon as the process has exited without it.
        """
        lines = getattr(self, stream)

        def found() -> str | None:
            exited = self.process.poll() is not None
            if exited:
                self._join_readers()  # everything it wrote is in `lines` now
            hit = next((line for line in list(lines) if text in line), None)
            if hit is None and exited:
                raise AssertionError(f"no {stream} line with {text!r}: " + self._ended())
            return hit
        return wait_until(found, timeout, f"a {stream} line with {text!r} from `sensornet {' '.join(self.args)}`")

    def wait_lines(self, count: int, stream: str = "stdout", timeout: float = 15) -> list[str]:
        """The first `count` lines of `stream`, waiting for them (AssertionError as wait_line)."""
        lines = getattr(self, stream)

        def enough() -> list[str] | None:
            exited = self.process.poll() is not None
            if exited:
                self._join_readers()
            if len(lines) >= count:
                return list(lines[:count])
            if exited:
                raise AssertionError(f"{len(lines)} of {count} {stream} lines: " + self._ended())
            return None
        return wait_until(enough, timeout, f"{count} {stream} lines from `sensornet {' '.join(self.args)}`")

    def wait(self, timeout: float) -> int:
        """Wait for it to exit by itself; return its exit status (all its output collected)."""
        status = self.process.wait(timeout)
        self._join_readers()
        return status

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, wait up to `timeout` s, then SIGKILL (childproc.stop); return the exit status."""
        status = stop_process(self.process, timeout)
        self._join_readers()
        assert status is not None
        return status


# ---- the virtual board ----

def start_endpoint(*flags: str, timeout: float = 15) -> tuple[Sensornet, int, int]:
    """Run `sensornet endpoint` on ports of its choosing; return it with its WebSocket and TCP
    ports once it listens (read from its `listening: ws://HOST:PORT tcp://HOST:PORT` line)."""
    proc = Sensornet("endpoint", "--host", "127.0.0.1", "--ws-port", "0", "--tcp-port", "0", *flags)
    try:
        line = proc.wait_line("listening: ", "stderr", timeout)
    except BaseException:
        proc.stop()
        raise
    match = re.fullmatch(r"listening: ws://127\.0\.0\.1:(\d+)/? tcp://127\.0\.0\.1:(\d+)", line)
    assert match, line
    return proc, int(match[1]), int(match[2])


def device_config(client_id: str, port: int, password: str = DEVICE_PASSWORD, **overrides: Any) -> dict[str, Any]:
    """A board's config.json (dict) for the test broker on 127.0.0.1:port and the default simulated AP."""
    ap = AccessPoint()
    cfg = {"wifi_ssid": ap.ssid, "wifi_password": ap.password, "mqtt_host": "127.0.0.1", "mqtt_port": port,
           "mqtt_user": client_id, "mqtt_password": password, "client_id": None, "publish_interval_s": 1,
           "wifi_timeout_s": 3, "ntp_host": None}  # NTP off: tests that want it name a loopback responder
    cfg.update(overrides)
    return cfg


def wait_code(board: VirtualBoard, code: int, timeout: float = 20.0, since: float = 0.0,
              repeats: int = 2) -> list[int]:
    """Wait until the red LED has blinked `code` `repeats` times in a row (complete groups);
    return every code decoded since `since` (unix time, s)."""
    def seen() -> list[int] | None:
        codes = board.blink_codes(since)
        return codes if len(codes) >= repeats and codes[-repeats:] == [code] * repeats else None
    return wait_until(seen, timeout, f"LED code {code}; console:\n{board.console_text()[-2000:]}", 0.2)


def led_dark_for(board: VirtualBoard, seconds: float) -> bool:
    """True when the red LED (GPIO0, active low) has been dark for the last `seconds` (s), or never lit."""
    timeline = board.pin_timeline(0)
    return not timeline or (timeline[-1][1] == 1 and time.time() - timeline[-1][0] >= seconds)


def codes_from_dark(board: VirtualBoard, since: float) -> list[int]:
    """The codes the red LED blinked after `since` (unix time, s), when it was dark at `since` for
    at least a group gap (led_dark_for): the first group counts too. (blink_codes() reports a group
    only with a gap seen before it, so it leaves out the first group after a dark LED: here that
    gap is put in as a blink ending leds.GAP_MIN_S before `since`.)"""
    dark_since = since - leds.GAP_MIN_S - 0.01
    lead = [(dark_since - 0.1, 0), (dark_since, 1)]
    timeline = [(t, level) for t, level in board.pin_timeline(0) if t >= since]
    return leds.decode_blink_codes(lead + timeline, active_low=True)


def run_micropython(code: str, hw_state: dict[str, Any] | None = None, tmp: Path | None = None,
                    timeout: float = 30) -> str:
    """Run `code` (str) in a fresh MicroPython VM; return its stdout (str). AssertionError on failure.

    sys.path: the firmware directory, the hardware models, umqtt. hw_state: the hardware world
    (virtual_huzzah's state.json) written to `tmp` for the models to read.
    """
    env = dict(os.environ, MICROPYPATH=":".join(["", str(FIRMWARE_DIR), ".frozen", str(VM_DIR),
                                                  str(MICROPYTHON_LIB_DIR)]))
    if hw_state is not None:
        assert tmp is not None, "hw_state needs a tmp directory"
        (tmp / "state.json").write_text(json.dumps(hw_state))
        env["VIRTUAL_HUZZAH_HW"] = str(tmp)
    result = subprocess.run([find_micropython(), "-c", code], env=env, capture_output=True, text=True,
                            timeout=timeout, cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
