"""The bridge's durable store: every accepted envelope, until every endpoint has it.

One SQLite database in the state directory (store-<client id>.sqlite3), in WAL mode
(https://sqlite.org/wal.html), used from the asyncio loop's thread only:

    envelopes(seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB, stored_at REAL)
    cursors(endpoint TEXT PRIMARY KEY, seq INTEGER)

- append(bodies) writes a batch in one transaction and returns once it is committed; only then
  does the bridge acknowledge the batch's messages to the broker. `synchronous=FULL` (the
  default) syncs the WAL at every commit, so a commit survives a power cut; NORMAL survives a
  crash or SIGKILL of the bridge but not of the machine.
- seq grows by one per envelope and is never reused (AUTOINCREMENT), so a cursor stays valid
  when the table empties.
- Each endpoint has a cursor: the highest seq it acknowledged. advance() moves it forward and
  deletes the rows every endpoint has (seq <= the lowest cursor).
- Bounded by bytes: stored_bytes is the size of the bodies still held; `full` is true at or
  over max_bytes (the bridge then stops acknowledging the broker, which holds the backlog).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL,
                                      stored_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (endpoint TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


class StoreError(RuntimeError):
    """The store cannot be opened or written (message names the file)."""


def store_path(state_dir: Path, client_id: str) -> Path:
    """The store of the bridge with this client id: <state_dir>/store-<client id>.sqlite3."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in client_id)
    return Path(state_dir) / f"store-{safe}.sqlite3"


class Store:
    """Envelopes (encoded bytes, one per row) and per-endpoint cursors; see the module docstring.

    path: the database file (its directory is made); endpoints: the endpoint URLs (a new one
    starts after the newest row; cursors of endpoints no longer configured are dropped);
    max_bytes: the bound on stored bytes; synchronous: "FULL" or "NORMAL"; clock: wall-clock
    seconds for stored_at (time.time). Raises StoreError when the file cannot be opened.
    """

    def __init__(self, path: Path, endpoints: Sequence[str], max_bytes: int, synchronous: str = "FULL",
                 clock: Callable[[], float] = time.time):
        self.path, self.max_bytes, self._clock = Path(path), max_bytes, clock
        self.last_seq = 0
        self.stored_bytes = 0
        self.cursors: dict[str, int] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(SCHEMA)
            self._open(endpoints)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{self.path}: cannot open the bridge's store: {e}") from None

    def _open(self, endpoints: Sequence[str]) -> None:
        db = self._db
        first = db.execute("SELECT min(seq) FROM envelopes").fetchone()[0]
        self.last_seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM envelopes").fetchone()[0])
        if first is None:  # empty: the next seq is after every seq ever used
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'envelopes'").fetchone()
            self.last_seq = int(row[0]) if row else 0
        # A new endpoint starts after the last envelope stored: it gets what arrives from now on
        # (envelopes still held for endpoints no longer configured are dropped with their cursors).
        known = dict(db.execute("SELECT endpoint, seq FROM cursors").fetchall())
        self.cursors = {url: known.get(url, self.last_seq) for url in endpoints}
        start = (first - 1) if first is not None else self.last_seq
        db.execute("BEGIN")
        db.execute(f"DELETE FROM cursors WHERE endpoint NOT IN ({','.join('?' * len(endpoints))})", tuple(endpoints))
        db.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?)", self.cursors.items())
        db.execute("COMMIT")
        self._pruned = start
        self._prune()
        self.stored_bytes = int(db.execute("SELECT coalesce(sum(length(body)), 0) FROM envelopes").fetchone()[0])

    @property
    def full(self) -> bool:
        """True when stored_bytes has reached max_bytes."""
        return self.stored_bytes >= self.max_bytes

    def append(self, bodies: Iterable[bytes]) -> int:
        """Store a batch of encoded envelopes in one committed transaction; return the last seq."""
        now = self._clock()
        rows = [(body, now) for body in bodies]
        if not rows:
            return self.last_seq
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO envelopes (body, stored_at) VALUES (?, ?)", rows)
            last = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.last_seq = last
        self.stored_bytes += sum(len(body) for body, _ in rows)
        return last

    def fetch(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` (seq, body) rows with seq > after, in seq order."""
        return self._db.execute("SELECT seq, body FROM envelopes WHERE seq > ? ORDER BY seq LIMIT ?",
                                (after, limit)).fetchall()

    def advance(self, endpoint: str, seq: int) -> None:
        """Record that `endpoint` has every envelope up to `seq`; drop rows every endpoint has."""
        if seq <= self.cursors[endpoint]:
            return
        self.cursors[endpoint] = seq
        self._db.execute("UPDATE cursors SET seq = ? WHERE endpoint = ?", (seq, endpoint))
        self._prune()

    def _prune(self) -> None:
        low = min(self.cursors.values(), default=self.last_seq)
        if low <= self._pruned:
            return
        db = self._db
        db.execute("BEGIN")
        freed = db.execute("SELECT coalesce(sum(length(body)), 0) FROM envelopes WHERE seq <= ?", (low,)).fetchone()[0]
        db.execute("DELETE FROM envelopes WHERE seq <= ?", (low,))
        db.execute("COMMIT")
        self._pruned = low
        self.stored_bytes -= int(freed)

    def backlog(self, endpoint: str) -> int:
        """Envelopes stored that `endpoint` has not acknowledged."""
        return max(0, self.last_seq - self.cursors[endpoint])

    def oldest_unacked_age(self, now: float | None = None) -> float:
        """Seconds since the oldest envelope some endpoint still lacks was stored (0 when none)."""
        low = min(self.cursors.values(), default=self.last_seq)
        row = self._db.execute("SELECT stored_at FROM envelopes WHERE seq > ? ORDER BY seq LIMIT 1",
                               (low,)).fetchone()
        return max(0.0, (self._clock() if now is None else now) - row[0]) if row else 0.0

    def close(self) -> None:
        self._db.close()
