"""The decision log: one JSON line per chat request, appended, flushed and fsynced before the
reply is sent, so a crash never loses a request that was already answered.

`awrite` (the server's path) is a group commit: a writer thread appends every record waiting at
that moment in ONE write, fsyncs once, then releases their requests; the event loop never blocks
on the disk and concurrent requests share one fsync. The commit window is therefore "the records
queued while the previous fsync ran": no reply leaves before its record is on disk, so a crash
(kill -9, power loss) loses only records of requests that had not been answered yet, and a batch
cut short by a crash leaves at most one torn last line, which `read_log` skips. `write` is the same,
synchronously.

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
import threading
from pathlib import Path
from typing import Any

from routers.errors import ConfigError
from routers.serve.schema import json_bytes


class DecisionLog:
    def __init__(self, path: str | Path, *, redact_content: bool = False):
        self.path = Path(path)
        self.redact_content = redact_content
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

    def _append(self, lines: list[bytes]) -> None:
        with self._lock:
            start = os.fstat(self._f.fileno()).st_size
            try:
                self._raw_write(b"".join(lines))
                os.fsync(self._f.fileno())
            except BaseException:
                try:                            # never leave a partial line behind
                    os.ftruncate(self._f.fileno(), start)
                except OSError:
                    pass
                raise
            self.batches += 1

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
