"""Recording routing data: grading, error cells, resume after a crash without repeated calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from routers.data import load_dataset
from routers.errors import ConfigError, DataError
from routers.pool.base import AuthFailed, RateLimited, WorkerReply
from routers.pool.stub import start_stub_server
from routers.record import arecord, cli_record, embedded_dataset, meta_path, read_records, record, run_record
from routers.tasks import get_task, load_task_items

REPO = Path(__file__).resolve().parents[1]


class FakePool:
    """Workers: 'right' always answers correctly, 'wrong' never, 'flaky' fails on chosen items.
    `crash_after` raises a non-worker error (a crash) once that many calls were made."""

    def __init__(self, items, *, fail_on=(), rate_limited_once=(), crash_after=None):
        self.names = ["right", "wrong", "flaky"]
        self.items = {it.id: it for it in items}
        self.fail_on, self.rate_limited_once = set(fail_on), set(rate_limited_once)
        self.crash_after = crash_after
        self.calls: Counter = Counter()
        self.params: list[dict] = []

    async def call(self, worker, messages, **params):
        if self.crash_after is not None and sum(self.calls.values()) >= self.crash_after:
            raise RuntimeError("power cut")
        item_id = params["item_id"]
        self.calls[(worker, item_id)] += 1
        self.params.append(params)
        assert messages == [{"role": "user", "content": self.items[item_id].prompt}]
        if worker == "flaky" and item_id in self.fail_on:
            raise AuthFailed(worker, "invalid key")
        if worker == "flaky" and item_id in self.rate_limited_once and self.calls[(worker, item_id)] == 1:
            raise RateLimited(worker, "slow down", retry_after=0.01)
        item = self.items[item_id]
        text = get_task(item.task).render_answer(item, worker != "wrong", np.random.default_rng(0))
        return WorkerReply(text=text, worker=worker, model=worker, input_tokens=10, output_tokens=5,
                           cost=0.002 if worker == "right" else 0.001, latency_s=0.1)


@pytest.fixture(scope="module")
def items():
    return load_task_items("mmlu:12,gsm8k:8", seed=0)


def test_record_grades_every_cell_and_writes_native_jsonl(tmp_path, items):
    bad = items[3].id
    pool = FakePool(items, fail_on=[bad], rate_limited_once=[items[5].id])
    out = tmp_path / "rec.jsonl"
    ds = record(pool, items, out, progress=False, concurrency=4, params={"temperature": 0},
                task_params={"gsm8k": {"max_tokens": 7}})
    assert ds.models == ["right", "wrong", "flaky"] and len(ds) == 20
    assert np.all(ds.scores[:, 0] == 1.0) and np.all(ds.scores[:, 1] == 0.0)
    row = ds.ids.index(bad)
    assert np.isnan(ds.scores[row, 2]) and np.isnan(ds.costs[row, 2])  # an error is missing, not 0
    assert np.nansum(ds.scores[:, 2]) == 19
    assert ds.meta["errors"] == {"flaky": 1}
    assert pool.calls[("flaky", items[5].id)] == 2  # retried after the rate limit
    assert pool.calls[("flaky", bad)] == 1          # auth errors are not retried
    # per-task generation budgets, overridden by params
    mmlu_params = next(p for p in pool.params if p["item_id"].startswith("mmlu"))
    assert mmlu_params["max_tokens"] == get_task("mmlu").max_tokens and mmlu_params["temperature"] == 0
    assert mmlu_params["role"] == "worker"
    assert all(p["max_tokens"] == 7 for p in pool.params if p["item_id"].startswith("gsm8k"))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 20
    first = lines[0]
    assert set(first) == {"id", "prompt", "category", "split", "answer", "task", "results"}
    assert set(first["results"]["right"]) == {"score", "cost", "response", "input_tokens", "output_tokens", "latency"}
    err = next(x for x in lines if x["id"] == bad)["results"]["flaky"]
    assert err["score"] is None and "AuthFailed" in err["error"]
    # the file loads back through the data loader, the same as the returned dataset
    back = load_dataset(str(out))
    assert back.ids == ds.ids and back.models == ds.models
    np.testing.assert_array_equal(back.scores, ds.scores)
    assert back.splits == ds.splits and set(back.splits) <= {"train", "validation", "test"}


def test_resume_after_crash_repeats_no_finished_call(tmp_path, items):
    out = tmp_path / "rec.jsonl"
    crashing = FakePool(items, crash_after=25)
    with pytest.raises(RuntimeError, match="power cut"):
        record(crashing, items, out, progress=False, concurrency=2)
    done = read_records(out)
    assert 0 < len(done) < len(items)
    done_ids = {r["id"] for r in done}
    for r in done:
        assert set(r["results"]) == {"right", "wrong", "flaky"}  # only whole queries are written
    resumed = FakePool(items)
    ds = record(resumed, items, out, progress=False, concurrency=2)
    assert len(ds) == len(items) and sorted(ds.ids) == sorted(it.id for it in items)
    called = {item_id for _, item_id in resumed.calls}
    assert not called & done_ids
    assert called == {it.id for it in items} - done_ids
    assert all(n == 1 for n in resumed.calls.values())
    assert ds.meta["resumed"] == len(done)
    # a third run has nothing left to do
    again = FakePool(items)
    ds2 = record(again, items, out, progress=False)
    assert not again.calls and len(ds2) == len(items)


def test_torn_last_line_is_dropped_and_redone(tmp_path, items):
    out = tmp_path / "rec.jsonl"
    record(FakePool(items[:3]), items[:3], out, progress=False)
    text = out.read_text()
    out.write_text(text + text.splitlines()[0][:40])  # a crash in the middle of a write
    assert len(read_records(out)) == 3
    assert out.read_text() == text
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "results": {}}\nnot json\n{"id": "b", "results": {}}\n')
    with pytest.raises(DataError, match=r"broken.jsonl.*row 2"):
        read_records(broken)


def test_resume_with_another_pool_is_refused(tmp_path, items):
    out = tmp_path / "rec.jsonl"
    record(FakePool(items[:2]), items[:2], out, progress=False)
    other = FakePool(items)
    other.names = ["right", "wrong"]
    with pytest.raises(DataError, match=r"rec.jsonl.*row 1.*record into a new file"):
        record(other, items, out, progress=False)
    assert not other.calls


def test_duplicate_items_are_refused(tmp_path, items):
    with pytest.raises(DataError, match="duplicate item id"):
        record(FakePool(items), [items[0], items[0]], tmp_path / "x.jsonl", progress=False)


def test_cli_record_with_the_simulated_pool(tmp_path, capsys):
    out = tmp_path / "sim.jsonl"
    args = SimpleNamespace(pool=str(REPO / "configs/pools/simulated.yaml"), tasks="mmlu:6,gsm8k:4", out=str(out), limit=None,
                           concurrency=4, cache=None, seed=0)
    assert cli_record(args) == 0
    ds = load_dataset(str(out))
    assert len(ds) == 10 and ds.n_models == 6 and not np.isnan(ds.scores).any()
    assert "gsm8k" in capsys.readouterr().out
    assert (tmp_path / "sim.jsonl.cache.sqlite").exists()


def test_embedded_dataset_is_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path))
    ds = embedded_dataset(seed=0, n_mmlu=30, n_gsm8k=20)
    files = list((tmp_path / "embedded").glob("*.jsonl"))
    assert len(files) == 1 and len(ds) == 50 and ds.n_models == 6
    assert Counter(t for t in ds.meta["tasks"]) == {"mmlu": 30, "gsm8k": 20}
    mtime = files[0].stat().st_mtime_ns
    again = embedded_dataset(seed=0, n_mmlu=30, n_gsm8k=20)
    assert files[0].stat().st_mtime_ns == mtime  # read from the cache, not re-recorded
    np.testing.assert_array_equal(again.scores, ds.scores)
    assert again.ids == ds.ids
    other = embedded_dataset(seed=1, n_mmlu=30, n_gsm8k=20)
    assert other.ids != ds.ids


# -- one writer per file, arguments kept beside it, resume after kill -9 ---------------------------

class SlowPool(FakePool):
    async def call(self, worker, messages, **params):
        await asyncio.sleep(0.01)
        return await super().call(worker, messages, **params)


def test_second_recorder_on_the_same_file_is_refused(tmp_path, items):
    out = tmp_path / "rec.jsonl"
    first, second = SlowPool(items), SlowPool(items)

    async def both():
        a = asyncio.ensure_future(arecord(first, items, out, progress=False, concurrency=2))
        await asyncio.sleep(0.05)  # the first one holds the file now
        with pytest.raises(DataError, match=r"rec.jsonl.*another `baton record` is writing this file"):
            await arecord(second, items, out, progress=False, concurrency=2)
        return await a

    ds = asyncio.run(both())
    assert not second.calls  # refused before paying for anything
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == len(items) == len(set(ids)) == len(ds)
    again = FakePool(items)  # the lock is released at the end: a rerun resumes (nothing to do)
    assert len(record(again, items, out, progress=False)) == len(items) and not again.calls


def test_resume_with_other_arguments_is_refused_naming_the_argument(tmp_path):
    pool = str(REPO / "configs/pools/simulated.yaml")
    out = tmp_path / "sim.jsonl"
    run_record(pool, "mmlu:4", str(out), seed=0)
    meta = json.loads(meta_path(out).read_text())
    assert meta["tasks"] == "mmlu:4" and meta["seed"] == 0 and meta["pool"].endswith("simulated.yaml")
    before = out.read_bytes()
    for kw, flag in (({"tasks_spec": "mmlu:6"}, "--tasks"), ({"seed": 1}, "--seed"), ({"limit": 3}, "--limit"),
                     ({"params": {"temperature": 0}}, "params")):
        args = {"tasks_spec": "mmlu:4", "seed": 0, **kw}
        with pytest.raises(DataError, match=rf"recorded with {flag} .*this run has {flag} .*mix two samples"):
            run_record(pool, args.pop("tasks_spec"), str(out), **args)
    assert out.read_bytes() == before
    ds = run_record(pool, "mmlu:4", str(out), seed=0)  # the same arguments resume
    assert len(ds) == 4 and ds.meta["resumed"] == 4 and ds.meta["new"] == 0


def test_a_file_without_arguments_is_resumed_and_gains_them(tmp_path, items):
    out = tmp_path / "old.jsonl"
    record(FakePool(items[:2]), items[:2], out, progress=False)
    meta_path(out).unlink()  # recorded before the sidecar existed
    ds = record(FakePool(items[:3]), items[:3], out, progress=False)
    assert len(ds) == 3 and json.loads(meta_path(out).read_text())["workers"] == ["flaky", "right", "wrong"]


def test_a_lone_surrogate_in_a_reply_is_written_escaped(tmp_path, items):
    class Surrogate(FakePool):
        async def call(self, worker, messages, **params):
            reply = await super().call(worker, messages, **params)
            reply.text += "\ud800"  # what a client that cut an emoji in half sends
            return reply

    out = tmp_path / "s.jsonl"
    record(Surrogate(items[:2]), items[:2], out, progress=False)
    rows = read_records(out)
    assert len(rows) == 2 and rows[0]["results"]["right"]["response"].endswith("\ud800")


def _stub_pool_file(tmp_path, url: str, workers=("a", "b")) -> str:
    cfg = {"workers": [{"name": w, "backend": "openai", "model": f"m-{w}", "base_url": url, "api_key_env": None}
                       for w in workers]}
    p = tmp_path / "stub_pool.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _baton_record(pool: str, out, tasks: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "routers.cli", "record", "--pool", pool, "--tasks", tasks, "--out", str(out),
           "--concurrency", "2", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for(cond, timeout=60.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_record_processes_on_one_out_one_is_refused(tmp_path):
    url, stop = start_stub_server(faults={"latency_s": 1.0})  # slow while the second one starts
    try:
        pool, out = _stub_pool_file(tmp_path, url), tmp_path / "rec.jsonl"
        a = _baton_record(pool, out, "mmlu:30")
        _wait_for(lambda: meta_path(out).exists())  # written under the lock
        b = _baton_record(pool, out, "mmlu:30")
        _, err_b = b.communicate(timeout=120)
        assert a.poll() is None  # the first one was still recording
        stop.stub.latency_s = 0.0
        _, err_a = a.communicate(timeout=120)
        assert a.returncode == 0, err_a
        assert b.returncode == 2 and "another `baton record` is writing this file" in err_b, err_b
        assert "Traceback" not in err_b
        ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
        assert len(ids) == 30 == len(set(ids))
        assert stop.stub.requests == 60  # every (query, worker) paid once
    finally:
        stop()


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_resume_after_kill_9_keeps_written_records_and_repeats_no_call(tmp_path, processes):
    url, stop = start_stub_server(faults={"latency_s": 0.2})
    try:
        pool, out = _stub_pool_file(tmp_path, url), tmp_path / "rec.jsonl"
        a = _baton_record(pool, out, "mmlu:40", "--processes", str(processes))
        _wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") >= 5)
        a.send_signal(signal.SIGKILL)
        a.wait(30)
        time.sleep(0.5)  # shard processes die with their parent: no call goes out after this
        at_kill = stop.stub.requests
        time.sleep(0.5)
        assert stop.stub.requests == at_kill
        stop.stub.latency_s = 0.0
        kept = read_records(out)  # (a torn last line would be cut here)
        assert 5 <= len(kept) < 40
        requests_before = stop.stub.requests
        b = _baton_record(pool, out, "mmlu:40")
        _, err = b.communicate(timeout=120)
        assert b.returncode == 0, err
        rows = read_records(out)
        assert rows[:len(kept)] == kept  # what was written before the kill is kept as it was
        ids = [r["id"] for r in rows]
        assert len(ids) == 40 == len(set(ids))
        # finished queries are not asked again; calls in flight at the kill come from the cache
        assert stop.stub.requests - requests_before <= 2 * (40 - len(kept))
    finally:
        stop()


def test_record_with_several_processes_writes_each_query_once(tmp_path):
    url, stop = start_stub_server()
    try:
        pool, out = _stub_pool_file(tmp_path, url, workers=("a", "b", "c")), tmp_path / "rec.jsonl"
        ds = run_record(pool, "mmlu:30,gsm8k:10", str(out), concurrency=6, processes=3)
        rows = read_records(out)
        assert len(rows) == 40 == len({r["id"] for r in rows}) == len(ds) and ds.meta["new"] == 40
        assert stop.stub.requests == 120  # every (query, worker) asked once
        assert ds.ids == [r["id"] for r in rows]  # the returned dataset is the file, in file order
        assert load_dataset(str(out)).ids == ds.ids
        again = run_record(pool, "mmlu:30,gsm8k:10", str(out), processes=1)  # resumes: nothing left
        assert again.meta["new"] == 0 and stop.stub.requests == 120
    finally:
        stop()


def test_a_failing_shard_process_is_reported(tmp_path):
    bad_cache = tmp_path / "cache.sqlite"
    bad_cache.write_bytes(b"not a database" * 100)  # each shard opens the cache and fails
    pool = str(REPO / "configs/pools/simulated.yaml")
    with pytest.raises(ConfigError, match=r"cache: .*cache.sqlite is not a usable SQLite database"):
        run_record(pool, "mmlu:4", str(tmp_path / "x.jsonl"), cache=str(bad_cache), processes=2)


def test_a_library_resume_keeps_the_cli_arguments_in_the_sidecar(tmp_path):
    pool = str(REPO / "configs/pools/simulated.yaml")
    out = tmp_path / "sim.jsonl"
    run_record(pool, "mmlu:3", str(out))
    from routers.pool.config import load_pool
    record(load_pool(pool), load_task_items("mmlu:3"), out, progress=False)  # no --tasks known here
    meta = json.loads(meta_path(out).read_text())
    assert meta["tasks"] == "mmlu:3" and meta["limit"] is None
    with pytest.raises(DataError, match="--tasks"):
        run_record(pool, "mmlu:5", str(out))


class CodePool:
    """HumanEval workers: 'right' writes the canonical solution, 'wrong' a wrong body, 'prose' no code."""

    names = ["right", "wrong", "prose"]

    def __init__(self, items):
        self.items = {it.id: it for it in items}

    async def call(self, worker, messages, **params):
        item = self.items[params["item_id"]]
        text = "I would rather not write code." if worker == "prose" else \
            get_task("humaneval").render_answer(item, worker == "right", np.random.default_rng(0))
        return WorkerReply(text=text, worker=worker, model=worker, input_tokens=10, output_tokens=5, cost=0.001,
                           latency_s=0.0)


@pytest.mark.parametrize("isolation", ["tripwire", "auto"])
def test_code_cells_record_the_sandbox_isolation_they_were_graded_in(tmp_path, monkeypatch, isolation):
    """A reader of a recording knows in which isolation each HumanEval cell was graded: namespaces, or the
    tripwire fallback (forced here, or what `auto` gives where namespaces do not work)."""
    from routers.tasks import sandbox

    monkeypatch.setenv(sandbox.ENV_VAR, isolation)
    expected = "tripwire" if isolation == "tripwire" else ("namespace" if sandbox.namespace_support()[0] else "tripwire")
    items = load_task_items("humaneval:3", seed=0)
    out = tmp_path / "code.jsonl"
    ds = record(CodePool(items), items, out, progress=False, concurrency=2)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        cells = line["results"]
        assert cells["right"]["score"] == 1.0 and cells["right"]["sandbox"] == expected
        assert cells["wrong"]["score"] == 0.0 and cells["wrong"]["sandbox"] == expected
        assert cells["prose"]["score"] == 0.0 and cells["prose"]["sandbox"] is None  # no code: nothing ran
    assert np.array_equal(load_dataset(str(out)).scores, ds.scores)  # the field loads back without complaint
    # tasks that run no code keep their cells as they were
    mc = load_task_items("mmlu:2", seed=0)
    record(FakePool(mc), mc, tmp_path / "mc.jsonl", progress=False)
    assert all("sandbox" not in c for x in read_records(tmp_path / "mc.jsonl") for c in x["results"].values())
