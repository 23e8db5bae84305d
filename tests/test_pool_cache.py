"""The SQLite response cache: hits, misses, keys, and concurrent writers (threads and processes)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading

import pytest

from routers.pool import WorkerReply, load_pool
from routers.pool.cache import ResponseCache, cache_key
from test_pool_support import ToyTask, make_items, user


def reply(i: int, worker: str = "w") -> WorkerReply:
    return WorkerReply(text=f"t{i}", worker=worker, model="m", input_tokens=10 + i, output_tokens=5,
                       cost=0.001 * i, latency_s=1.5, meta={"i": i})


def test_hit_returns_original_tokens_cost_and_zero_latency(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite")
    k = cache_key("w", "m", user("q"), {"temperature": 0})
    assert c.get(k) is None
    c.put(k, reply(3))
    hit = c.get(k)
    assert hit.cached and hit.text == "t3" and hit.input_tokens == 13 and hit.cost == pytest.approx(0.003)
    assert hit.latency_s == 0.0 and hit.meta == {"i": 3, "original_latency_s": 1.5}
    assert (c.hits, c.misses) == (1, 1) and c.stats()["entries"] == 1


def test_key_depends_on_worker_model_params_and_messages():
    base = cache_key("w", "m", user("q"), {"temperature": 0})
    assert base == cache_key("w", "m", user("q"), {"temperature": 0})
    others = [cache_key("w2", "m", user("q"), {"temperature": 0}), cache_key("w", "m2", user("q"), {"temperature": 0}),
              cache_key("w", "m", user("q"), {"temperature": 1}), cache_key("w", "m", user("q2"), {"temperature": 0})]
    assert len({base, *others}) == 5


def test_pool_call_goes_through_cache(tmp_path):
    cfg = {"workers": [{"name": "s", "backend": "simulated", "accuracy": {"default": 0.5},
                        "input_price": 1, "output_price": 1}]}
    pool = load_pool(cfg, cache=str(tmp_path / "c.sqlite"))
    items = make_items(4)
    pool.register(items, tasks={"toy": ToyTask()})

    async def go():
        first = [await pool.call("s", user(it.prompt)) for it in items]
        second = [await pool.call("s", user(it.prompt)) for it in items]
        return first, second
    first, second = asyncio.run(go())
    assert not any(r.cached for r in first) and all(r.cached for r in second)
    assert [r.text for r in first] == [r.text for r in second]
    assert [r.cost for r in first] == [r.cost for r in second]
    assert (pool.cache.hits, pool.cache.misses) == (4, 4)


def _writer(path: str, proc: int, n: int) -> None:
    c = ResponseCache(path)
    for i in range(n):
        c.put(cache_key(f"p{proc}", "m", user(str(i)), {}), reply(i, worker=f"p{proc}"))
        assert c.get(cache_key(f"p{proc}", "m", user(str(i)), {})) is not None


def test_concurrent_writers_threads_and_processes(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ResponseCache(path)  # create the schema first, as a pool does at load
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 60)) for p in range(3)]
    threads = [threading.Thread(target=_writer, args=(path, 10 + t, 60)) for t in range(3)]
    for x in (*procs, *threads):
        x.start()
    for x in (*procs, *threads):
        x.join(60)
    assert all(p.exitcode == 0 for p in procs)
    c = ResponseCache(path)
    assert len(c) == 6 * 60
    assert c.get(cache_key("p1", "m", user("59"), {})).text == "t59"


def test_unusable_cache_file_is_a_config_error(tmp_path):
    from routers.errors import ConfigError
    bad = tmp_path / "c.sqlite"
    bad.write_text("this is not a database" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite database"):
        ResponseCache(bad)


def test_simulated_seed_is_part_of_the_cache_key(tmp_path):
    path = str(tmp_path / "c.sqlite")
    items = make_items(40)

    def scores(seed):
        cfg = {"seed": seed, "workers": [{"name": "s", "backend": "simulated", "accuracy": {"default": 0.5}}]}
        pool = load_pool(cfg, cache=path)
        pool.register(items, tasks={"toy": ToyTask()})
        async def go():
            return [(await pool.call("s", user(it.prompt))) for it in items]
        replies = asyncio.run(go())
        return [r.meta["score"] for r in replies], [r.cached for r in replies]
    s0, c0 = scores(0)
    s1, c1 = scores(1)
    assert not any(c0) and not any(c1) and s0 != s1
    assert scores(0) == (s0, [True] * 40)
