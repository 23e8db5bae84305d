"""The decision log: one JSON line per chat request, appended before the reply is sent.

Each record is ONE `write` to a file opened for appending, made before the reply leaves: a kill -9
of the server right after cannot lose it (the kernel has it) nor tear it (a write completes or
never starts). Durability against power loss is a group commit with a documented window,
`fsync_window_s` (serve config `log_fsync_window_ms`, default 20 ms): a background thread fsyncs
at most that long after a record was written, all records since the last fsync together, so a
power loss or OS crash loses at most the records of the last window. `fsync_window_s = 0` is the
strict mode: a writer thread appends every record waiting at that moment in one write, fsyncs
once, and only then releases their requests (concurrent requests share one fsync; each request
waits one). Either way the event loop never blocks on a fsync, and a batch cut short by a crash
leaves at most one torn last line, which `read_log` skips. `write` is the synchronous strict path.

Every record is writable: text is UTF-8 with anything UTF-8 cannot hold (a lone UTF-16 surrogate
that a JavaScript client sent) written as a JSON `\\uXXXX` escape, so it reads back as it came;
a record json cannot encode at all (a bug: a cycle, NaN-free types) is written in a reduced form
that names why. Records are encoded by the request that owns them, so one request's content never
fails another's batch. A failed write (disk full) is truncated back, never leaving a partial line,
and is raised to the requests of that batch only (the server still answers them; see app.py).

A record: request_id, time, router, tenant, lam, stream, candidate rankings, per call the chosen
worker, role, attempts (latency, error), exclusions (naming the rule), tokens, cost, fallbacks,
outcome, status. API keys never reach it (the server passes only the tenant); with
`redact_content` the messages are kept as role + length only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from routers.errors import ConfigError
from routers.pool.base import json_bytes


class DecisionLog:
    def __init__(self, path: str | Path, *, redact_content: bool = False, fsync_window_s: float = 0.02):
        self.path = Path(path)
        self.redact_content = redact_content
        self.fsync_window_s = float(fsync_window_s)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "ab", buffering=0)
        except OSError as e:
            raise ConfigError(f"--log {self.path}: cannot open the decision log for appending ({e})") from None
        self._lock = threading.Lock()          # the file
        self._cv = threading.Condition()       # the queue of records waiting for the writer
        self._pending: list[tuple[bytes, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._thread: threading.Thread | None = None
        self.batches = 0                       # fsyncs done (benchmarks read it)
        self._dirty = threading.Event()        # written since the last fsync (windowed mode)
        self._syncer: threading.Thread | None = None

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The request's messages as logged (content removed when redacting)."""
        if self.redact_content:
            return [{"role": m.get("role"), "chars": len(json.dumps(m.get("content") or "", ensure_ascii=False))
                     if not isinstance(m.get("content"), str) else len(m["content"])} for m in messages]
        return [{k: v for k, v in m.items()} for m in messages]

    def write(self, record: dict[str, Any]) -> None:
        self._append([self._line(record)])

    async def awrite(self, record: dict[str, Any]) -> None:
        """Append `record`; returns once it is on disk (fsynced), without blocking the loop.
        Raises OSError when the disk refused this batch (nothing of it was left in the file)."""
        line = self._line(record)
        if self.fsync_window_s > 0:            # write now (survives kill -9), fsync within the window
            with self._lock:
                self._write_whole(line)
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, name="baton-decision-fsync", daemon=True)
                self._syncer.start()
            self._dirty.set()
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="baton-decision-log", daemon=True)
                self._thread.start()
            self._pending.append((line, loop, fut))
            self._cv.notify()
        await fut

    @staticmethod
    def _line(record: dict[str, Any]) -> bytes:
        try:
            return json_bytes(record) + b"\n"
        except (TypeError, ValueError, RecursionError) as e:   # never fail: say why, keep the ids
            keep = {k: record.get(k) for k in ("request_id", "time", "router", "tenant", "status", "outcome")}
            keep = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in keep.items()}
            return json_bytes({**keep, "log_error": f"record unserializable ({type(e).__name__}: {e}); "
                                                    "reduced to its ids"}) + b"\n"

    def _raw_write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._f.write(view)
            view = view[n:]

    def _write_whole(self, data: bytes) -> None:
        """Append `data` or nothing of it (a failed write is truncated back). Caller holds the lock."""
        start = os.fstat(self._f.fileno()).st_size
        try:
            self._raw_write(data)
        except BaseException:
            try:                            # never leave a partial line behind
                os.ftruncate(self._f.fileno(), start)
            except OSError:
                pass
            raise

    def _append(self, lines: list[bytes]) -> None:
        with self._lock:
            self._write_whole(b"".join(lines))
            os.fsync(self._f.fileno())
            self.batches += 1

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(self.fsync_window_s)     # gather the window's records into one fsync
            self._dirty.clear()
            try:
                os.fsync(self._f.fileno())
                self.batches += 1
            except (OSError, ValueError) as e:  # closed file at shutdown, or a failing disk
                if not self._f.closed:
                    print(f"baton serve: decision log fsync failed: {e}", file=sys.stderr, flush=True)
                return

    def _writer(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                batch, self._pending = self._pending, []
            try:
                self._append([line for line, _, _ in batch])
                err = None
            except Exception as e:  # noqa: BLE001 - the batch's requests get the error, the thread lives
                err = e if isinstance(e, OSError) else OSError(f"{type(e).__name__}: {e}")
            for _, loop, fut in batch:
                loop.call_soon_threadsafe(_settle, fut, err)

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                try:
                    os.fsync(self._f.fileno())
                except OSError:
                    pass
                self._f.close()


def _settle(fut: asyncio.Future, err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a decision log; a torn last line (crash mid-write) is skipped, others must parse."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: decision log not found")
    lines = p.read_bytes().split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line.decode("utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if i == len(lines):
                break
            raise ConfigError(f"{p}: line {i} is not JSON ({e})") from None
    return out
