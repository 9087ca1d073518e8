"""Run MicroPython code on the unix-port VM with the board models and the firmware on sys.path."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from virtual_huzzah import board as paths
from virtual_huzzah.board import VM_DIR, find_micropython


def run(code: str, hw_state: dict | None = None, tmp: Path | None = None, timeout: float = 30) -> str:
    """Run `code` (str) in a fresh VM; return its stdout (str). Raises AssertionError on failure.

    sys.path: the firmware directory, the hardware models, umqtt. hw_state: the hardware world
    (virtual_huzzah state.json) written to `tmp` for the models to read.
    """
    env = dict(os.environ, MICROPYPATH=":".join(["", str(paths.FIRMWARE_DIR), ".frozen", str(VM_DIR),
                                                  str(paths.MICROPYTHON_LIB_DIR)]))
    if hw_state is not None:
        (tmp / "state.json").write_text(json.dumps(hw_state))
        env["VIRTUAL_HUZZAH_HW"] = str(tmp)
    result = subprocess.run([find_micropython(), "-c", code], env=env, capture_output=True, text=True,
                            timeout=timeout, cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
