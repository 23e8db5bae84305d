"""A persistent response cache: recording a task suite twice, or re-running an experiment, does
not pay for the same call twice.

SQLite in WAL mode (readers never block the writer; concurrent writers from threads and processes
wait on SQLite's own lock, `busy_timeout` 30 s), one connection per thread. The key is the sha256
of (worker name, model, call params, messages) in canonical JSON, so any change to the prompt or
to a generation parameter misses. Only successful replies are stored. A hit returns the original
text, tokens and cost with `cached=True`, `latency_s=0.0` and `meta["original_latency_s"]`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from routers.errors import ConfigError
from routers.pool.base import Message, WorkerReply
from routers.sqlitedb import connect_wal

_SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, worker TEXT NOT NULL, reply TEXT NOT NULL,
    created REAL NOT NULL)"""


def cache_key(worker: str, model: str, messages: list[Message], params: dict[str, Any]) -> str:
    blob = json.dumps({"worker": worker, "model": model, "params": params, "messages": messages},
                      sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()  # a lone surrogate too


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cache: cannot create directory for {self.path}: {e}") from None
        self._local = threading.local()
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()
        self._conn()  # create the file and table now, so a bad path fails at load

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = connect_wal(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute(_SCHEMA)
            except sqlite3.DatabaseError as e:
                raise ConfigError(f"cache: {self.path} is not a usable SQLite database: {e}") from None
            self._local.conn = conn
        return conn

    def get(self, key: str) -> WorkerReply | None:
        row = self._conn().execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        with self._count_lock:
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        d = json.loads(row[0])
        reply = WorkerReply(**d)
        reply.meta = {**reply.meta, "original_latency_s": d["latency_s"]}
        reply.latency_s, reply.cached = 0.0, True
        return reply

    def put(self, key: str, reply: WorkerReply) -> None:
        d = asdict(reply)
        d["cached"] = False
        self._conn().execute("INSERT OR REPLACE INTO replies (key, worker, reply, created) VALUES (?, ?, ?, ?)",
                             (key, reply.worker, json.dumps(d, default=str), time.time()))

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {"path": str(self.path), "entries": len(self), "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / total if total else 0.0}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
