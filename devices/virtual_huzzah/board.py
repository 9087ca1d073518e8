"""A virtual Adafruit Feather Huzzah: the unmodified firmware on the real MicroPython VM.

Each board is one `micropython` process (MicroPython's unix port, built 32-bit like the ESP8266
by `make setup`, with asyncio and umqtt.simple frozen in as in the ESP8266_GENERIC firmware)
whose current directory plays the board's filesystem: the deployed firmware (build/firmware:
boot.py, main.py, the rest as .mpy) and its config.json. On sys.path after the filesystem and
the frozen modules sit models of the board's C modules, `machine` and `network` (vm/machine.py,
vm/network.py, precompiled to .mpy). The host side here writes the world the board lives in
(light level, the devices on the I2C bus, the Wi-Fi access point) to hw/state.json and reads
what the board did (GPIO levels with timestamps, Wi-Fi events) from hw/events.log; the board's
serial console is its stdout, or with serial_dir a pseudo-terminal speaking MicroPython's REPL
(serialport.py, repl.py) for mpremote and rshell.

Heap: the ESP8266's MicroPython heap is a 38 KB array (ESP8266_HEAP, 38,912 bytes; the port's
main.c). A board gets exactly that plus what the models keep allocated (they are C on the
board), measured at start-up by loading them in a scratch VM (runtime.model_overhead()). On a 64-bit
VM (--micropython with another build) objects take about twice the room, so the firmware's share
is doubled there: an approximation, which the 32-bit build makes unnecessary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import childproc

from . import leds
from .chip import client_id_for, mac_for, unique_id_for
from .runtime import (
    REPO,
    BoardError,
    find_micropython,
    heap_budget,
    vm_path,
)
from .serialport import SerialConsole
from .wifi import AccessPoint, access_point_state, cut_tcp_connections

# The firmware's sources (devices/feather_huzzah) and its deployment (`make firmware`: what a
# board runs and bootstrap.sh uploads); where `sensornet sim` keeps its boards.
FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "feather_huzzah"
DEPLOY_DIR = REPO / "build" / "firmware"
STATE_DIR = REPO / ".sensornet"
RESET_EXIT_STATUS = 100  # vm/machine.py: machine.reset() ends the VM with this status
# machine.reset_cause() values of the esp8266 port
PWRON_RESET, WDT_RESET, SOFT_RESET, HARD_RESET = 0, 1, 4, 6
WDT_TIMEOUT_S = 3.2  # the ESP8266's soft watchdog: reset when not fed for this long
WATCH_INTERVAL_S = 0.2
TSL2561_PART_ID = 0x50  # the ID register of TSL2561 parts in the field (datasheet: 0x1x)
DEFAULT_ACCESS_POINT = AccessPoint()  # sensornet-sim, in range


def _i2c_bus(tsl2561_address: int | None, bme280: dict | None = None) -> dict:
    bus = {} if tsl2561_address is None else {str(tsl2561_address): {"model": "tsl2561", "id": TSL2561_PART_ID}}
    if bme280:
        bus[str(bme280["address"])] = bme280
    return bus


class VirtualBoard:
    """One virtual Feather Huzzah.

    root: a directory of its own (fs/ the board's filesystem, hw/ the shared hardware state,
    console.log). chip_id: the ESP8266's 24-bit chip id; machine.unique_id() gives its 4 bytes
    little-endian, as the esp8266 port does, and the MAC is 5c:cf:7f + the chip id.
    config: dict written as fs/config.json, a str written verbatim (to test broken files), or
    None for no file. lux: illuminance the TSL2561 sees (lux, float); ir_ratio: IR/broadband.
    tsl2561_address: 0x29, 0x39, 0x49, or None for no sensor on the bus. access_point: the AP in
    range, or None. umqtt: False leaves umqtt.simple out, like the 1 MB firmware build.
    firmware_dir: what is flashed: build/firmware (`make firmware`) by default, or any directory
    of .py/.mpy files. heap_bytes: the VM's heap (default: heap_budget(), the ESP8266's 38 KB
    plus the models' share).
    on_console: called with each console line (str) from a reader thread.
    serial_dir: give the board a serial console, a pty at serial_dir/<client_id> speaking the
    REPL, raw REPL and raw-paste mode (mpremote, rshell); a board with no firmware (an empty
    firmware_dir) then idles at its REPL.
    """

    def __init__(self, root: Path, chip_id: int, *, config: dict | str | None = None,
                 firmware_dir: Path = DEPLOY_DIR, lux: float = 250.0, ir_ratio: float = 0.3,
                 tsl2561_address: int | None = 0x39, access_point: AccessPoint | None = DEFAULT_ACCESS_POINT,
                 micropython: str | None = None, umqtt: bool = True, heap_bytes: int | None = None,
                 on_console: Callable[[str], None] | None = None, serial_dir: Path | None = None):
        if not 0 <= chip_id < 1 << 24:
            raise ValueError(f"chip_id {chip_id:#x}: the ESP8266 chip id has 24 bits")
        self.root = Path(root)
        self.fs = self.root / "fs"
        self.hw = self.root / "hw"
        self.chip_id = chip_id
        self.config = config
        self.firmware_dir = Path(firmware_dir)
        self.micropython = find_micropython(micropython)
        self.umqtt = umqtt
        self.heap_bytes = heap_bytes or heap_budget(self.micropython)
        self.on_console = on_console
        self.serial_dir = None if serial_dir is None else Path(serial_dir)
        self.serial: SerialConsole | None = None
        self._partial = b""
        self.unique_id = unique_id_for(chip_id)
        self.mac = mac_for(chip_id)
        self._tsl2561 = tsl2561_address
        self._bme280: dict[str, object] | None = None  # set_bme280() puts one on the bus
        self._state: dict[str, Any] = {  # hw/state.json: what vm/_vhw.py reads
            "chip_id": self.unique_id.hex(), "mac": self.mac.replace(":", ""), "lux": lux, "ir_ratio": ir_ratio,
            "i2c": _i2c_bus(tsl2561_address), "ap": access_point_state(access_point)}
        self.console: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.resets: list[tuple[float, int]] = []  # (unix time, reset cause) of each restart since power-on
        self.exit_status: int | None = None  # set when the VM ended by itself, not by a reset
        self._reader: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._powered = threading.Event()
        self._power_lock = threading.RLock()
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
        self._tsl2561 = address
        self._state["i2c"] = _i2c_bus(address, self._bme280)
        self._write_state()

    def set_bme280(self, address: int | None = 0x76, temperature_c: float = 21.5, humidity_pct: float = 45.0,
                   pressure_hpa: float = 1013.25) -> None:
        """Plug a BME280 in at `address` (0x76, 0x77) in this weather, or unplug it (None)."""
        self._bme280 = None if address is None else {"model": "bme280", "address": address, "temperature_c":
                                                     temperature_c, "humidity_pct": humidity_pct,
                                                     "pressure_hpa": pressure_hpa}
        self._state["i2c"] = _i2c_bus(self._tsl2561, self._bme280)
        self._write_state()

    def hold_button(self, held: bool = True) -> None:
        """Hold the Feather's user button (GPIO0 to ground) down, or let it go."""
        self._state["inputs"] = {"0": 0} if held else {}
        self._write_state()

    def set_access_point(self, ap: AccessPoint | None) -> None:
        """Put an access point in range, or take it away (None).

        Taking it away or changing it drops the association, and with it the board's TCP
        connections: they are aborted (the board's next socket call fails with ECONNABORTED).
        """
        self._state["ap"] = access_point_state(ap)
        self._write_state()
        if self.running and self.process is not None:
            cut_tcp_connections(self.process.pid)

    # --- power ----------------------------------------------------------------------------
    def flash(self) -> None:
        """Write the firmware's files and config.json to the board's filesystem."""
        if self.fs.exists():
            shutil.rmtree(self.fs)
        self.fs.mkdir(parents=True)
        files = sorted(self.firmware_dir.glob("*.py")) + sorted(self.firmware_dir.glob("*.mpy"))
        if not files and self.serial_dir is None:  # with a serial console: a board to provision
            raise BoardError(f"no firmware in {self.firmware_dir}: run `make firmware`")
        for f in files:
            shutil.copy2(f, self.fs / f.name)
        if isinstance(self.config, dict):
            (self.fs / "config.json").write_text(json.dumps(self.config, indent=2))
        elif isinstance(self.config, str):
            (self.fs / "config.json").write_text(self.config)

    def start(self) -> VirtualBoard:
        """Power the board up (flashing it the first time). Raises BoardError if the VM won't run.

        Power-on clears the RTC memory and starts with reset_cause() PWRON_RESET. From then on a
        watcher thread restarts the board, its filesystem and RTC memory kept, when the firmware
        calls machine.reset() (SOFT_RESET) or starves the watchdog (WDT_RESET); `resets` lists them.
        """
        if not self.fs.exists():
            self.flash()
        self.hw.mkdir(parents=True, exist_ok=True)
        for name in ("rtc.bin", "wdt"):
            (self.hw / name).unlink(missing_ok=True)
        (self.hw / "events.log").write_text("")
        self.resets.clear()
        self.exit_status = None
        if self.serial_dir is not None and self.serial is None:
            self.serial = SerialConsole(self.serial_dir / self.client_id, self._console_output,
                                        self.soft_reset).start()
        self._powered.set()
        self._launch(PWRON_RESET)
        self._watcher = threading.Thread(target=self._watch, daemon=True, name=f"{self.client_id} watcher")
        self._watcher.start()
        return self

    def _launch(self, cause: int | None, raw_repl: bool = False) -> None:
        """Start the VM: after a chip reset with `cause`, or (None) after a soft reset, which
        keeps the reset cause and the watchdog as they are; raw_repl: boot.py only."""
        if cause is not None:
            self._state["reset_cause"] = cause
            self._write_state()
            (self.hw / "wdt").unlink(missing_ok=True)
        env = dict(os.environ, MICROPYPATH=vm_path(self.umqtt), VIRTUAL_HUZZAH_HW=str(self.hw))
        argv = [self.micropython, "-X", f"heapsize={self.heap_bytes}", "-m", "_board"]
        try:
            if self.serial is not None:
                self.process, self._reader = self.serial.launch(argv, self.fs, env, raw_repl=raw_repl,
                                                                chip_reset=cause is not None)
                return
            self.process = subprocess.Popen(argv, cwd=self.fs, env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise BoardError(f"cannot run {self.micropython}: {e}") from e
        self._reader = threading.Thread(target=self._read_console, args=(self.process,), daemon=True)
        self._reader.start()

    def soft_reset(self, raw_repl: bool = False) -> None:
        """Soft reset (Ctrl-D at the REPL): the VM starts again, the chip does not: the reset
        cause, RTC memory and the watchdog are kept, and `resets` does not count it. boot.py
        runs, and main.py unless raw_repl (the raw REPL was on, as on the esp8266 port)."""
        with self._power_lock:
            if not self._powered.is_set():
                return
            childproc.kill(self.process)
            self._join()
            self._launch(None, raw_repl)

    def _watch(self) -> None:
        """Restart after machine.reset() or a starved watchdog; note any other end of the VM."""
        while self._powered.is_set():
            time.sleep(WATCH_INTERVAL_S)
            with self._power_lock:
                if not self._powered.is_set() or self.process is None:
                    return
                status = self.process.poll()
                if status == RESET_EXIT_STATUS:
                    self._restart(SOFT_RESET)
                elif status is not None:
                    self.exit_status = status
                    return
                elif self._watchdog_starved():
                    childproc.kill(self.process)
                    self._restart(WDT_RESET)

    def _watchdog_starved(self) -> bool:
        try:
            fed = int((self.hw / "wdt").read_text()) / 1000
        except (OSError, ValueError):  # no watchdog started yet, or a write in progress
            return False
        return time.time() - fed > WDT_TIMEOUT_S

    def _restart(self, cause: int) -> None:
        self._join()
        self.resets.append((time.time(), cause))
        self._launch(cause)

    def reset(self, cause: int = HARD_RESET) -> None:
        """Press the RST button: the chip restarts at once (reset_cause() HARD_RESET by default);
        the filesystem and the RTC memory are kept."""
        with self._power_lock:
            childproc.kill(self.process)
            self._restart(cause)

    def _read_console(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None  # started with stdout=PIPE
        for raw in process.stdout:
            self._console_output(raw)

    def _console_output(self, data: bytes) -> None:
        """What the VM printed: kept line by line in `console` and console.log, and on_console."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if not lines:
            return
        with open(self.root / "console.log", "a", encoding="utf-8") as log:
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                with self._lock:
                    self.console.append(line)
                log.write(line + "\n")
                if self.on_console:
                    self.on_console(line)

    @property
    def running(self) -> bool:
        """True while the board is powered and its VM runs (False during a restart's instant)."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 3.0) -> None:
        """Power off: SIGTERM, then SIGKILL after `timeout` seconds."""
        self._power_off(lambda p: childproc.stop(p, timeout))

    def kill(self) -> None:
        """Die at once (SIGKILL), as a board does when its power is pulled."""
        self._power_off(childproc.kill)

    def _power_off(self, end: Callable[[subprocess.Popen[bytes] | None], object]) -> None:
        with self._power_lock:
            self._powered.clear()
            end(self.process)
            self._join()
        if self._watcher and self._watcher is not threading.current_thread():
            self._watcher.join(2)
        if self.serial is not None:
            self.serial.close()
            self.serial = None

    def _join(self) -> None:
        if self._reader and self._reader is not threading.current_thread():
            self._reader.join(2)
        if self.process:
            for pipe in (self.process.stdout, self.process.stdin):
                if pipe:
                    pipe.close()

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
            if self.exit_status is not None or not self._powered.is_set():
                break  # the VM ended for good (a reset restarts it)
            time.sleep(0.05)
        raise TimeoutError(f"{self.client_id}: no console line with {text!r} in {timeout} s; "
                           f"console:\n{self.console_text()[-3000:]}")

    def heap_free(self) -> list[int]:
        """The firmware's own reports of free heap (bytes), from its console, oldest first."""
        with self._lock:
            return [int(line.rsplit(" ", 1)[1]) for line in self.console if "heap free" in line]
