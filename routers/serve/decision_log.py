"""The decision log: one JSON line per chat request, appended, flushed and fsynced before the
reply is sent, so a crash never loses a request that was already answered.

`awrite` (the server's path) is a group commit: a writer thread appends every record waiting at
that moment, fsyncs once, then releases their requests; the event loop never blocks on the disk
and concurrent requests share one fsync. `write` is the same, synchronously.

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


class DecisionLog:
    def __init__(self, path: str | Path, *, redact_content: bool = False):
        self.path = Path(path)
        self.redact_content = redact_content
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--log {self.path}: cannot open the decision log for appending ({e})") from None
        self._lock = threading.Lock()          # the file
        self._cv = threading.Condition()       # the queue of records waiting for the writer
        self._pending: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._thread: threading.Thread | None = None

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The request's messages as logged (content removed when redacting)."""
        if self.redact_content:
            return [{"role": m.get("role"), "chars": len(str(m.get("content") or ""))} for m in messages]
        return [{"role": m.get("role"), "content": m.get("content")} for m in messages]

    def write(self, record: dict[str, Any]) -> None:
        self._append([self._line(record)])

    async def awrite(self, record: dict[str, Any]) -> None:
        """Append `record`; returns once it is on disk (fsynced), without blocking the loop."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="baton-decision-log", daemon=True)
                self._thread.start()
            self._pending.append((self._line(record), loop, fut))
            self._cv.notify()
        await fut

    @staticmethod
    def _line(record: dict[str, Any]) -> str:
        return json.dumps(record, ensure_ascii=False, default=str) + "\n"

    def _append(self, lines: list[str]) -> None:
        with self._lock:
            self._f.write("".join(lines))
            self._f.flush()
            os.fsync(self._f.fileno())

    def _writer(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                batch, self._pending = self._pending, []
            try:
                self._append([line for line, _, _ in batch])
                err = None
            except (OSError, ValueError) as e:
                err = e
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
    lines = p.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise ConfigError(f"{p}: line {i} is not JSON ({e})") from None
    return out
