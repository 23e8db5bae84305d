"""One way to open baton's SQLite caches (embeddings, worker replies) for many processes at once.

WAL mode lets readers and one writer work together. Switching a new file to WAL takes an exclusive
lock, and SQLite answers "database is locked" at once (its busy timeout does not apply) while
another process is switching the same file: `connect_wal` retries that step briefly.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path


def connect_wal(path: str | Path, timeout: float = 60.0, **kwargs) -> sqlite3.Connection:
    """`sqlite3.connect(path, timeout=timeout, **kwargs)` in WAL mode."""
    conn = sqlite3.connect(path, timeout=timeout, **kwargs)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.02 + 0.05 * random.random())
