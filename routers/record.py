"""Record a routing dataset: every task item against every worker of a pool, graded, one JSONL
line per query (the native format `routers.data.load_dataset` reads):

    {"id", "prompt", "category", "split", "answer", "task",
     "results": {worker: {"score", "cost", "response", "input_tokens", "output_tokens", "latency"}
                         | {"error": "..."}}}

Crash-safe and resumable: a query's line is appended (and fsynced) only once all its workers have
answered, so on restart the finished queries are read back and skipped, and no paid call is made
again for them; calls of a query that was in flight are covered by the pool's SQLite cache. A
worker error is stored as {"error": ...} for that cell (score missing, never 0) and reported.

One writer per file: the output is held under an exclusive `flock` while recording, so a second
`baton record` on the same `--out` fails at once instead of paying for every call twice. The run's
arguments (tasks, limit, seed, pool, workers, params) are kept beside it in `<out>.meta.json`; a
resume with other arguments is refused, naming the argument, since it would mix two samples.
Finished lines are group-committed: one write and one fsync for all the queries that finished
while the previous fsync ran, so durability does not cap throughput. One process tops out at what
its HTTP client costs per request; `processes` > 1 (`baton record --processes N`) shards the calls
over N processes while this one alone holds the lock and writes.

`embedded_dataset()` is the default dataset of `baton eval --data embedded` and `make demo`: the
simulated pool recorded over packaged MMLU and GSM8K questions, cached under ~/.cache/baton.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from routers.data.schema import RoutingDataset
from routers.data.splits import assign_splits
from routers.errors import ConfigError, DataError
from routers.paths import cache_root
from routers.pool.base import WorkerError
from routers.tasks import Task, TaskItem, get_task, load_task_items

CONFIGS = (Path(__file__).resolve().parents[1] / "baton" / "configs").resolve()  # repo link or installed data
EMBEDDED_VERSION = 1  # bump when the embedded recipe changes, to invalidate old caches


# -- the file --------------------------------------------------------------------------------------

def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The finished query lines of a record file. A torn last line (a crash mid-write) is cut off
    the file so appending continues cleanly; a bad line anywhere else is a DataError."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    *complete, tail = raw.split(b"\n")  # tail: b"" when the file ends with a newline
    rows = []
    for i, line in enumerate(complete, 1):
        if line.strip():
            row = _parse_record(line)
            if row is None:
                raise DataError("not a record line (a JSON object with 'id' and 'results')",
                                file=str(path), row=i)
            rows.append(row)
    if tail.strip():
        row = _parse_record(tail)
        with path.open("r+b") as f:
            if row is None:  # torn write: drop it
                f.truncate(len(raw) - len(tail))
            else:  # a whole object that lost only its newline
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
                rows.append(row)
    return rows


def _parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(row, dict) and "id" in row and isinstance(row.get("results"), dict)
    return row if ok else None


def records_to_dataset(rows: list[dict[str, Any]], *, file: str = "<records>", name: str = "recorded",
                       seed: int = 0) -> RoutingDataset:
    """A RoutingDataset from record lines, read by the same code as `load_dataset` reads the file
    (errored cells have score null: NaN, never 0). meta gains per-query task names and error counts."""
    from routers.data.common import LoadOptions
    from routers.data.native import from_records

    if not rows:
        raise DataError("no recorded queries", file=file)
    ds = from_records(rows, file=file, name=name, opts=LoadOptions(seed=seed))
    errors = Counter(w for r in rows for w, c in r["results"].items() if c and c.get("error"))
    ds.meta.update(tasks=[r.get("task") for r in rows], errors=dict(errors))
    return ds


# -- recording -------------------------------------------------------------------------------------

META_FORMAT = "baton-record-args/1"
# meta key -> how the user names it (the CLI flag, where there is one)
_ARG_NAMES = {"tasks": "--tasks", "limit": "--limit", "seed": "--seed", "pool": "--pool",
              "workers": "the pool's workers", "params": "params", "task_params": "task_params"}


def meta_path(out: str | Path) -> Path:
    """The sidecar holding the arguments a record file was made with: `<out>.meta.json`."""
    return Path(str(out) + ".meta.json")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def check_run_args(out: Path, args: dict[str, Any], *, has_records: bool) -> None:
    """Refuse to resume `out` with arguments other than those it was recorded with (a mixed sample),
    naming the first argument that differs; then store `args` in the sidecar. A file with records
    but no sidecar (recorded before sidecars existed) is resumed and gains one."""
    mp = meta_path(out)
    args = _jsonable(args)
    old: dict[str, Any] = {}
    if has_records and mp.is_file():
        try:
            old = json.loads(mp.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"unreadable record arguments ({e}); restore it or record into a new file",
                            file=str(mp)) from None
        if not isinstance(old, dict) or old.get("format") != META_FORMAT:
            raise DataError(f"not a record-arguments file (expected format {META_FORMAT!r})", file=str(mp))
        for key, new in args.items():
            if key in old and old[key] != new:
                name = _ARG_NAMES.get(key, key)
                raise DataError(f"{out} was recorded with {name} {old[key]!r}, this run has {name} {new!r}; "
                                "resuming would mix two samples. Rerun with the same arguments, or record "
                                "into a new --out", file=str(mp))
    tmp = mp.with_name(mp.name + ".tmp")  # keeps what only the first run knew (a library resume has no --tasks)
    tmp.write_text(json.dumps({**old, "format": META_FORMAT, **args}, indent=1, sort_keys=True) + "\n",
                   encoding="utf-8")
    os.replace(tmp, mp)


@contextlib.contextmanager
def _exclusive_append(out: Path):
    """`out` opened for binary appending under an exclusive, non-blocking flock (released when the
    file closes, also when the process is killed): a second recorder on the same file fails here."""
    f = out.open("ab")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError("another `baton record` is writing this file (it holds the lock); wait for it "
                            "to finish, or record into another --out", file=str(out)) from None
        yield f
    finally:
        f.close()


def _line(row: dict[str, Any]) -> bytes:
    """A record line. A lone surrogate in a reply becomes its JSON escape (\\ud800), so a line is
    always writable."""
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


class _GroupWriter:
    """Appends finished lines to the record file from one background task. Lines that arrive while
    a write+fsync is under way go out together in the next one (group commit), so a durable run
    pays one fsync per batch, not per query; the fsync runs in a thread and never stalls the loop."""

    def __init__(self, f, durable: bool, on_written):
        self.f, self.durable, self.on_written = f, durable, on_written
        self.queue: list[tuple[bytes, dict[str, Any]]] = []
        self.written: list[dict[str, Any]] = []  # in file order
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.ensure_future(self._run())

    def put(self, row: dict[str, Any]) -> None:
        if self._task.done():  # the writer failed (disk full...): stop recording, say why
            self._task.result()
        self.queue.append((_line(row), row))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                batch, self.queue = self.queue, []
                self.f.write(b"".join(line for line, _ in batch))
                self.f.flush()
                if self.durable:
                    await asyncio.to_thread(os.fsync, self.f.fileno())
                self.written.extend(row for _, row in batch)
                self.on_written(len(batch))
            if self._closing:
                return

    async def close(self) -> None:
        """Write (and fsync) every queued line, then stop."""
        self._closing = True
        self._wake.set()
        await self._task


async def arecord(pool, items: list[TaskItem], out_path: str | Path, *, concurrency: int = 8,
                  progress: bool = True, seed: int = 0, params: dict[str, Any] | None = None,
                  tasks: dict[str, Task] | None = None, retries: int = 2, durable: bool = True,
                  task_params: dict[str, dict[str, Any]] | None = None,
                  run_args: dict[str, Any] | None = None) -> RoutingDataset:
    """`record` inside a running event loop. `tasks` maps task names to Task objects for suites
    that are not registered (tests, custom graders). Retryable worker errors (rate limits, 5xx,
    timeouts) are tried again `retries` times before the cell is recorded as an error. `durable`
    fsyncs every line (off only for rebuildable caches such as the embedded dataset).
    `task_params` ({"gsm8k": {"max_tokens": 256}}) override `params` for one task's items.
    `run_args` (the CLI's tasks, limit, pool) join seed, workers and params in the sidecar that a
    resume must match."""
    from tqdm.auto import tqdm

    out = Path(out_path)
    names = list(pool.names)
    args = {**(run_args or {}), "seed": seed, "workers": sorted(names), "params": params, "task_params": task_params}
    with _resume(out, items, names, args) as (f, done, pending):
        if hasattr(pool, "register"):  # a simulated pool answers only items it knows
            pool.register(pending, tasks)
        with tqdm(total=len(pending), disable=not progress, desc=f"record {out.name}", unit="query",
                  mininterval=1.0) as bar:
            writer = _GroupWriter(f, durable, bar.update)
            try:
                await _record_pending(pool, pending, names, writer, concurrency=concurrency, seed=seed,
                                      params=params, tasks=tasks, retries=retries, task_params=task_params)
            finally:  # queries already finished reach the file even when another one failed
                await writer.close()
    # file order: the returned dataset is what load_dataset(out) reads
    return _recorded(done + writer.written, out, seed=seed, new=len(writer.written), resumed=len(done))


@contextlib.contextmanager
def _resume(out: Path, items: list[TaskItem], names: list[str], args: dict[str, Any]):
    """(the locked file, its finished rows, the items still to record), after refusing what a resume
    must not mix: duplicate items, rows of another pool, other run arguments."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicate item id {next(i for i in ids if ids.count(i) > 1)!r} in the items to record")
    with _exclusive_append(out) as f:
        done = read_records(out)
        for i, r in enumerate(done, 1):
            if set(r["results"]) != set(names):  # resuming with another pool would leave holes
                raise DataError(f"query {r['id']!r} was recorded with workers {sorted(r['results'])}, but this "
                                f"pool has {sorted(names)}; record into a new file", file=str(out), row=i)
        check_run_args(out, args, has_records=bool(done))
        done_ids = {r["id"] for r in done}
        yield f, done, [it for it in items if it.id not in done_ids]


def _recorded(rows: list[dict[str, Any]], out: Path, *, seed: int, new: int, resumed: int) -> RoutingDataset:
    ds = records_to_dataset(rows, file=str(out), name=out.stem, seed=seed)
    if ds.meta["errors"]:
        print(f"record: worker errors (cells left without a score): {ds.meta['errors']}", file=sys.stderr)
    ds.meta.update(path=str(out), new=new, resumed=resumed)
    return ds


async def _record_pending(pool, pending: list[TaskItem], names: list[str], writer, *,
                          concurrency: int, seed: int, params: dict[str, Any] | None,
                          tasks: dict[str, Task] | None, retries: int,
                          task_params: dict[str, dict[str, Any]] | None) -> None:
    """Every pending item against every worker: `concurrency` calls in flight at most, and as many
    queries (a few beyond the calls, so a crash loses little), each appended once all its cells are in."""
    suites: dict[str, Task] = dict(tasks or {})
    splits = dict(zip((it.id for it in pending), assign_splits([it.prompt for it in pending], seed=seed)))
    sem = asyncio.Semaphore(max(1, concurrency))

    def suite(name: str) -> Task:
        if name not in suites:
            suites[name] = get_task(name)
        return suites[name]

    async def cell(item: TaskItem, worker: str) -> dict[str, Any]:
        task = suite(item.task)
        call_params = {"max_tokens": task.max_tokens, **(params or {}), **(task_params or {}).get(item.task, {})}
        async with sem:
            for attempt in range(retries + 1):
                try:
                    reply = await pool.call(worker, task.messages(item), item_id=item.id, role="worker",
                                            **call_params)
                    break
                except (WorkerError, asyncio.TimeoutError, OSError) as e:
                    if attempt < retries and getattr(e, "retryable", False):
                        await asyncio.sleep(min(60.0, getattr(e, "retry_after", None) or 2.0 ** attempt))
                        continue
                    return {"score": None, "error": f"{type(e).__name__}: {e}"}
        # humaneval runs a sandbox; its cells also say in which isolation ("sandbox": namespace | tripwire)
        score, graded = await asyncio.to_thread(task.grade_detail, reply.text, item)
        return {"score": float(score), "cost": reply.cost, "response": reply.text,
                "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                "latency": reply.latency_s, **graded}

    async def query(item: TaskItem) -> None:
        results = await asyncio.gather(*(cell(item, w) for w in names))
        row = {"id": item.id, "prompt": item.prompt, "category": item.category, "split": splits[item.id],
               "answer": item.answer, "task": item.task, "results": dict(zip(names, results))}
        writer.put(row)

    todo = iter(pending)

    async def lane() -> None:  # one query at a time; `window` lanes share the item iterator
        for item in todo:
            await query(item)

    window = max(1, concurrency)
    lanes = [asyncio.ensure_future(lane()) for _ in range(min(window, len(pending)))]
    try:
        for t in asyncio.as_completed(lanes):
            await t  # the first failure (a crash, not a worker error) propagates
    finally:
        for t in lanes:
            t.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)


def record(pool, items: list[TaskItem], out_path: str | Path, *, concurrency: int = 8,
           progress: bool = True, seed: int = 0, params: dict[str, Any] | None = None,
           tasks: dict[str, Task] | None = None, retries: int = 2,
           task_params: dict[str, dict[str, Any]] | None = None) -> RoutingDataset:
    """Run every item against every worker of `pool` (an object with `.names` and async
    `.call(worker, messages, **params)`), grade, append to `out_path`; resumable. `params` (e.g.
    {"max_tokens": 64, "temperature": 0}) override each task's defaults."""
    return asyncio.run(arecord(pool, items, out_path, concurrency=concurrency, progress=progress,
                               seed=seed, params=params, tasks=tasks, retries=retries,
                               task_params=task_params))


def summarize(ds: RoutingDataset) -> str:
    """Accuracy, cost and tokens per task and worker, as printed by `baton record`."""
    tasks = ds.meta.get("tasks") or [c.split("/")[0] for c in ds.categories]
    lines = [f"{ds.describe()}"]
    for t in sorted(set(tasks)):
        rows = np.array([x == t for x in tasks])
        for j, w in enumerate(ds.models):
            s = ds.scores[rows, j]
            ok = ~np.isnan(s)
            if not ok.any():
                lines.append(f"  {t:10s} {w:24s} no scores")
                continue
            out_tok = np.nansum(ds.output_tokens[rows, j]) if ds.output_tokens is not None else float("nan")
            lat = np.nansum(ds.latencies[rows, j]) if ds.latencies is not None else float("nan")
            lines.append(f"  {t:10s} {w:24s} acc {s[ok].mean():.3f} (n={ok.sum()}, missing {(~ok).sum()})  "
                         f"cost ${np.nansum(ds.costs[rows, j]):.4f}  out tokens {out_tok:.0f}  "
                         f"worker-seconds {lat:.1f}")
    return "\n".join(lines)


async def _record_with_pool(pool_path: str, items: list[TaskItem], out: str, *, cache: str | None,
                            concurrency: int, seed: int, params: dict[str, Any] | None,
                            progress: bool = True, durable: bool = True,
                            task_params: dict[str, dict[str, Any]] | None = None,
                            run_args: dict[str, Any] | None = None) -> RoutingDataset:
    from routers.pool.config import load_pool

    pool = load_pool(pool_path, cache=cache)
    try:
        return await arecord(pool, items, out, concurrency=concurrency, seed=seed, params=params,
                             progress=progress, durable=durable, task_params=task_params, run_args=run_args)
    finally:
        close = getattr(pool, "aclose", None)
        if close is not None:
            await close()


# -- several recorder processes --------------------------------------------------------------------
# One Python process tops out at what its HTTP client costs per request (~1-2 ms of CPU with the
# openai SDK), so `processes > 1` shards the pending items over that many processes, each with its
# own pool and event loop, while this process alone holds the file lock and writes the lines.

class _PipeWriter:
    """A shard's writer: every finished line goes to the parent, the only writer of the file."""

    def __init__(self, conn):
        self.conn = conn

    def put(self, row: dict[str, Any]) -> None:
        self.conn.send_bytes(_line(row))


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when its parent dies (kill -9 included), so no shard goes on
    paying for calls whose lines nobody will write."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _shard_main(conn, parent_pid: int, pool_path: str, cache: str | None, items: list[TaskItem],
                names: list[str], kw: dict[str, Any]) -> None:
    _die_with_parent(parent_pid)

    async def main() -> None:
        from routers.pool.config import load_pool

        pool = load_pool(pool_path, cache=cache)
        try:
            if list(pool.names) != names:
                raise DataError(f"the pool changed while recording: {pool.names} != {names}", file=str(pool_path))
            if hasattr(pool, "register"):
                pool.register(items, None)
            await _record_pending(pool, items, names, _PipeWriter(conn), **kw)
        finally:
            close = getattr(pool, "aclose", None)
            if close is not None:
                await close()

    try:
        asyncio.run(main())
    except BaseException as e:  # noqa: BLE001 - every failure goes to the parent, which raises it
        try:
            exc = pickle.loads(pickle.dumps(e))
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as text
            exc = None
        conn.send_bytes(b"\0" + pickle.dumps((f"{type(e).__name__}: {e}", exc)))
        return
    conn.send_bytes(b"")  # finished


def _record_processes(pool_path: str, items: list[TaskItem], out: Path, *, processes: int, cache: str | None,
                      concurrency: int, seed: int, params: dict[str, Any] | None,
                      task_params: dict[str, dict[str, Any]] | None, run_args: dict[str, Any] | None,
                      progress: bool = True, durable: bool = True) -> RoutingDataset:
    """`arecord` over `processes` shard processes (spawned, each `concurrency / processes` calls in
    flight, and its own pool, so a worker's `max_concurrency` applies per process). Lines that
    arrive while an fsync runs are written together in the next one."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    from tqdm.auto import tqdm

    from routers.pool.config import load_pool

    probe = load_pool(pool_path)  # for the worker names; every shard builds its own pool
    names = list(probe.names)
    if hasattr(probe, "aclose"):
        asyncio.run(probe.aclose())
    args = {**(run_args or {}), "seed": seed, "workers": sorted(names), "params": params, "task_params": task_params}
    ctx = mp.get_context("spawn")  # never fork a process that may hold threads and an event loop
    with _resume(out, items, names, args) as (f, done, pending):
        shards = [sh for sh in (pending[i::processes] for i in range(processes)) if sh]
        kw = dict(concurrency=max(1, -(-concurrency // max(1, len(shards)))), seed=seed, params=params,
                  tasks=None, retries=2, task_params=task_params)
        procs: dict[Any, Any] = {}
        written, failure = 0, None
        try:
            for shard in shards:
                here, there = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_shard_main, args=(there, os.getpid(), pool_path, cache, shard, names, kw),
                                   daemon=True, name="baton-record-shard")
                proc.start()
                there.close()
                procs[here] = proc
            live = set(procs)
            with tqdm(total=len(pending), disable=not progress, desc=f"record {out.name}", unit="query",
                      mininterval=1.0) as bar:
                while live and failure is None:
                    batch = []
                    for conn in wait(list(live)):
                        for _ in range(10_000):  # what this shard has sent so far
                            try:
                                msg = conn.recv_bytes()
                            except EOFError:
                                live.discard(conn)
                                failure = failure or (f"a record process exited (code {procs[conn].exitcode}) "
                                                      "before finishing", None)
                                break
                            if not msg:
                                live.discard(conn)
                                break
                            if msg[:1] == b"\0":
                                live.discard(conn)
                                failure = failure or pickle.loads(msg[1:])  # from our own child process
                                break
                            batch.append(msg)
                            if not conn.poll():
                                break
                    if batch:
                        f.write(b"".join(batch))
                        f.flush()
                        if durable:
                            os.fsync(f.fileno())
                        written += len(batch)
                        bar.update(len(batch))
        finally:
            for proc in procs.values():
                if proc.is_alive():
                    proc.kill()
            for proc in procs.values():
                proc.join()
        if failure is not None:
            text, exc = failure
            if isinstance(exc, BaseException):
                raise exc
            raise RuntimeError(f"record: {text}")
    rows = read_records(out)  # file order, as load_dataset(out) reads it
    return _recorded(rows, out, seed=seed, new=written, resumed=len(done))


def run_record(pool_path: str, tasks_spec: str, out: str, *, limit: int | None = None, concurrency: int = 8,
               cache: str | None = None, seed: int = 0, params: dict[str, Any] | None = None,
               task_params: dict[str, dict[str, Any]] | None = None, processes: int = 1) -> RoutingDataset:
    """What `baton record` and scripts/build_routing_data.py do. The response cache defaults to
    OUT + ".cache.sqlite", so a rerun after a crash repeats no paid call. `processes` > 1 shards
    the calls over that many processes (for thousands of requests per second)."""
    from routers.pool.config import pool_path as resolve_pool

    if processes < 1:
        raise ConfigError(f"--processes: must be >= 1, got {processes}")
    if concurrency < 1:
        raise ConfigError(f"--concurrency: must be >= 1, got {concurrency}")
    items = load_task_items(tasks_spec, limit=limit, seed=seed)
    cache = cache or str(Path(out)) + ".cache.sqlite"
    run_args = {"tasks": tasks_spec, "limit": limit, "pool": str(resolve_pool(pool_path).resolve())}
    if processes > 1:
        ds = _record_processes(pool_path, items, Path(out), processes=processes, cache=cache,
                               concurrency=concurrency, seed=seed, params=params, task_params=task_params,
                               run_args=run_args)
    else:
        ds = asyncio.run(_record_with_pool(pool_path, items, out, cache=cache, concurrency=concurrency,
                                           seed=seed, params=params, task_params=task_params, run_args=run_args))
    print(summarize(ds))
    return ds


def cli_record(args) -> int:
    """`baton record --pool P --tasks mmlu:200,gsm8k:50 --out F [--limit N] [--concurrency C]
    [--cache DB] [--seed S] [--processes N]`."""
    run_record(args.pool, args.tasks, args.out, limit=args.limit, concurrency=args.concurrency,
               cache=args.cache, seed=args.seed, processes=getattr(args, "processes", 1))
    return 0


# -- the embedded default dataset ------------------------------------------------------------------

def configs_dir() -> Path:
    """The configs/ folder: $BATON_CONFIGS, else the one beside the `routers` package (the repo)."""
    return Path(os.environ.get("BATON_CONFIGS") or CONFIGS)


def embedded_dataset(seed: int = 0, n_mmlu: int = 600, n_gsm8k: int = 400, *,
                     progress: bool = False) -> RoutingDataset:
    """The simulated pool (configs/pools/simulated.yaml) recorded over a seeded sample of packaged
    MMLU and GSM8K questions. Cached by seed, sizes and the pool file's hash; the first build takes
    seconds (the simulation makes no model calls), later ones read the cache."""
    pool_file = configs_dir() / "pools" / "simulated.yaml"
    if not pool_file.is_file():
        raise DataError(f"the simulated pool config is missing: {pool_file} (set BATON_CONFIGS to the "
                        "repo's configs/ folder)", file=str(pool_file))
    pool_hash = hashlib.sha256(pool_file.read_bytes()).hexdigest()[:12]
    key = f"v{EMBEDDED_VERSION}-seed{seed}-mmlu{n_mmlu}-gsm8k{n_gsm8k}-pool{pool_hash}"
    out = cache_root() / "embedded" / f"{key}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = ",".join(p for p in (f"mmlu:{n_mmlu}" if n_mmlu else "", f"gsm8k:{n_gsm8k}" if n_gsm8k else "") if p)
    items = load_task_items(spec, seed=seed)
    with _locked(out.with_suffix(".lock")):  # two processes building the same cache take turns
        rows = read_records(out)
        if len(rows) == len(items):
            ds = records_to_dataset(rows, file=str(out), name="embedded", seed=seed)
        else:
            ds = asyncio.run(_record_with_pool(str(pool_file), items, str(out), cache=None, concurrency=64,
                                               seed=seed, params=None, progress=progress, durable=False))
    ds.name = "embedded"
    ds.meta.update(pool=str(pool_file), cache_file=str(out), seed=seed)
    return ds


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
