"""The dashboard's history: readings and devices in one SQLite file, with retention.

readings: one row per numeric quantity of a message on sensors/<client_id>/<sensor>:
  t (REAL, Unix seconds UTC, when the dashboard received it), ts (INTEGER or NULL, the device's
  capture time from the payload's "ts", when its clock is set), client_id, sensor, quantity
  (the payload's key, e.g. "lux"), value (REAL).
devices: the latest of what each device said: MAC (connect/), status (status/), last seen,
  health (the latest sensors/<cid>/system payload, JSON) and the last error reply
  (status/<cid>/error, JSON).

Rows older than the retention (days) are deleted by prune(). One connection, shared by the
MQTT thread (writes) and the web server (reads) under a lock; WAL so readers do not wait on
the disk. sqlite3 is the standard library's binding of SQLite 3.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    t REAL NOT NULL, ts INTEGER, client_id TEXT NOT NULL, sensor TEXT NOT NULL,
    quantity TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (t);
CREATE INDEX IF NOT EXISTS readings_by_quantity ON readings (quantity, t);
CREATE TABLE IF NOT EXISTS devices (
    client_id TEXT PRIMARY KEY, mac TEXT, status TEXT, last_seen REAL,
    health TEXT, last_error TEXT, sensors TEXT NOT NULL DEFAULT '{}');
"""

# Payload keys that are not quantities: the reading's sequence number and capture time.
NOT_QUANTITIES = ("seq", "ts")


def quantities(payload: Any) -> dict[str, float]:
    """The numeric quantities of a reading payload: {key: value} for each int or float value
    (not bool, not NaN/infinity) except "seq" and "ts". Anything but a dict gives {}."""
    if not isinstance(payload, dict):
        return {}
    return {k: float(v) for k, v in payload.items()
            if isinstance(k, str) and k not in NOT_QUANTITIES and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(v)}


class Store:
    """The SQLite history at `path` (created with its directory when missing).

    retention_days: how long readings are kept (> 0). Thread-safe. close() when done.
    """

    def __init__(self, path: Path, retention_days: float = 30.0):
        self.path = Path(path)
        self.retention_days = retention_days
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writes (the MQTT thread) ----

    def add_reading(self, client_id: str, sensor: str, values: dict[str, float], t: float,
                    ts: int | None = None) -> bool:
        """Store `values` ({quantity: value}) of one message; mark the device seen at `t`
        and remember which quantities its `sensor` has. True when one of them is new for it."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO readings (t, ts, client_id, sensor, quantity, value) VALUES (?, ?, ?, ?, ?, ?)",
                [(t, ts, client_id, sensor, q, v) for q, v in values.items()])
            row = self._device_row(client_id)
            sensors = json.loads(row["sensors"]) if row else {}
            known = set(sensors.get(sensor, []))
            sensors[sensor] = sorted(known | set(values))
            self._upsert(client_id, last_seen=t, sensors=json.dumps(sensors, sort_keys=True))
            return not known >= set(values)

    def update_device(self, client_id: str, **fields: Any) -> None:
        """Set some of mac, status, last_seen, health (dict), last_error (dict) of a device."""
        for key in ("health", "last_error"):
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        with self._lock, self._db:
            self._upsert(client_id, **fields)

    def forget_device(self, client_id: str) -> None:
        """Drop a device's row (its readings stay until the retention removes them)."""
        with self._lock:
            self._db.execute("DELETE FROM devices WHERE client_id = ?", (client_id,))

    def prune(self, now: float | None = None) -> int:
        """Delete readings older than the retention; return how many went."""
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400
        with self._lock:
            return self._db.execute("DELETE FROM readings WHERE t < ?", (cutoff,)).rowcount

    def _device_row(self, client_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM devices WHERE client_id = ?", (client_id,)).fetchone()
        return row

    def _upsert(self, client_id: str, **fields: Any) -> None:
        self._db.execute("INSERT OR IGNORE INTO devices (client_id) VALUES (?)", (client_id,))
        if fields:
            assignments = ", ".join(f"{key} = ?" for key in fields)  # keys: our own column names
            self._db.execute(f"UPDATE devices SET {assignments} WHERE client_id = ?", (*fields.values(), client_id))

    # ---- reads (the web server) ----

    def device(self, client_id: str) -> dict[str, Any] | None:
        """One device as devices() gives it, or None."""
        with self._lock:
            row = self._device_row(client_id)
        return _device_dict(row) if row else None

    def devices(self) -> list[dict[str, Any]]:
        """Every device: {"client_id", "mac", "status", "last_seen" (Unix s or None), "health"
        (dict or None), "last_error" (dict or None), "sensors" ({sensor: [quantity, ...]})}."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM devices ORDER BY client_id").fetchall()
        return [_device_dict(r) for r in rows]

    def history(self, since: float, until: float | None = None, max_points: int = 600,
                exclude_sensors: tuple[str, ...] = ()) -> dict[str, dict[str, list[list[float]]]]:
        """Readings received in [since, until]: {quantity: {client_id: [[t, value], ...]}}, t in
        Unix seconds, oldest first. A series with more than `max_points` points is averaged into
        `max_points` equal time buckets."""
        until = time.time() if until is None else until
        bucket = max((until - since) / max_points, 1e-6)
        skip = ",".join("?" * len(exclude_sensors)) or "''"
        where = f"WHERE t >= ? AND t <= ? AND sensor NOT IN ({skip})"
        with self._lock:
            longest = self._db.execute(f"SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM readings {where} "
                                       f"GROUP BY quantity, client_id)", (since, until, *exclude_sensors)).fetchone()[0]
            if (longest or 0) <= max_points:
                rows = self._db.execute(f"SELECT quantity, client_id, t, value FROM readings {where} "
                                        f"ORDER BY quantity, client_id, t", (since, until, *exclude_sensors)).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT quantity, client_id, AVG(t) AS t, AVG(value) AS value, "
                    f"CAST((t - ?) / ? AS INTEGER) AS b FROM readings {where} "
                    f"GROUP BY quantity, client_id, b ORDER BY quantity, client_id, b",
                    (since, bucket, since, until, *exclude_sensors)).fetchall()
        out: dict[str, dict[str, list[list[float]]]] = {}
        for r in rows:
            out.setdefault(r["quantity"], {}).setdefault(r["client_id"], []).append(
                [round(r["t"], 3), r["value"]])
        return out

    def rows(self, since: float, until: float | None = None, client_id: str | None = None
             ) -> Iterator[tuple[float, int | None, str, str, str, float]]:
        """Every stored reading in [since, until] (of one device when `client_id` is given), oldest
        first: (t, ts, client_id, sensor, quantity, value). Read in one go under the lock."""
        until = time.time() if until is None else until
        query = "SELECT t, ts, client_id, sensor, quantity, value FROM readings WHERE t >= ? AND t <= ?"
        params: tuple[Any, ...] = (since, until)
        if client_id:
            query += " AND client_id = ?"
            params += (client_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY t, rowid", params).fetchall()
        for r in rows:
            yield (r[0], r[1], r[2], r[3], r[4], r[5])


def _device_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {"client_id": row["client_id"], "mac": row["mac"], "status": row["status"],
            "last_seen": row["last_seen"], "health": json.loads(row["health"]) if row["health"] else None,
            "last_error": json.loads(row["last_error"]) if row["last_error"] else None,
            "sensors": json.loads(row["sensors"])}
