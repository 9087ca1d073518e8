"""The spool: an endpoint's envelopes still undelivered at shutdown, kept on disk for the next run.

One file per endpoint in the state directory, spool-<sha256(url)[:16]>.jsonl: a first line
{"endpoint": URL}, then one envelope per line (sensornet.envelope's encode_line). Written to a
temporary file, fsynced and renamed, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .envelope import encode_line, parse_json


def spool_path(state_dir: Path, url: str) -> Path:
    """File holding one endpoint's unsent envelopes between runs: spool-<sha256(url)[:16]>.jsonl."""
    return Path(state_dir) / f"spool-{hashlib.sha256(url.encode()).hexdigest()[:16]}.jsonl"


def save(state_dir: Path, url: str, envelopes: list[dict[str, Any]]) -> Path:
    """Write `envelopes` (dicts) for endpoint `url` to its spool file; return the path. Raises OSError."""
    path = spool_path(state_dir, url)
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps({"endpoint": url}).encode() + b"\n")
        f.writelines(encode_line(e) for e in envelopes)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def load(state_dir: Path, url: str) -> tuple[list[Any], int]:
    """Read and remove endpoint `url`'s spool file: (envelopes, number of damaged lines skipped).

    A missing file gives ([], 0). Raises OSError when the file exists but cannot be read.
    """
    path = spool_path(state_dir, url)
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return [], 0
    envelopes, damaged = [], 0
    for line in lines[1:]:
        try:
            envelopes.append(parse_json(line.decode("utf-8")))
        except ValueError:  # UnicodeDecodeError is a ValueError too
            damaged += 1
    path.unlink(missing_ok=True)
    return envelopes, damaged
