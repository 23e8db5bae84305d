"""Replay workers answer from a recorded RoutingDataset; unknown queries are errors."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from routers.data.schema import RoutingDataset
from routers.errors import ConfigError
from routers.pool import UnknownQuery
from routers.pool.pool import Pool
from routers.pool.replay import ReplayData, ReplayWorker
from test_pool_support import user

NAN = math.nan


def dataset(**kw) -> RoutingDataset:
    return RoutingDataset(
        ids=["a", "b", "c"], prompts=["What is 2+2?", "Name a prime.", "Capital of France?"],
        categories=["math", "math", "geo"], splits=["train", "test", "test"], models=["m1", "m2"],
        scores=np.array([[1, 0], [0, 1], [1, NAN]], dtype=float), **kw)


def replay_pool(ds: RoutingDataset) -> Pool:
    data = ReplayData(ds, where="toy recording")
    return Pool([ReplayWorker("m1", data=data, input_price=1.0, output_price=3.0),
                 ReplayWorker("m2", data=data, input_price=2.0, output_price=2.0)])


def run(coro):
    return asyncio.run(coro)


def test_replays_recorded_response_tokens_cost_and_score():
    ds = dataset(costs=np.array([[0.01, 0.02], [0.03, 0.04], [0.05, NAN]]),
                 input_tokens=np.array([[10, 11], [12, 13], [14, NAN]]), output_tokens=np.array([[5, 6], [7, 8], [9, NAN]]),
                 responses=[["4", "five"], ["7", "2"], ["Paris", None]])
    pool = replay_pool(ds)
    r = run(pool.call("m2", user("Name a prime.")))
    assert (r.text, r.input_tokens, r.output_tokens, r.cost, r.meta["score"]) == ("2", 13, 8, 0.04, 1.0)
    assert r.meta["item_id"] == "b" and "tokens_estimated" not in r.meta


def test_lookup_by_item_id_exact_prompt_and_contained_prompt():
    pool = replay_pool(dataset())
    assert run(pool.call("m1", user("ignored"), item_id="c")).meta["item_id"] == "c"
    assert run(pool.call("m1", user("What is 2+2?"))).meta["item_id"] == "a"
    msgs = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Question: Capital of France?\nThink first."}]
    assert run(pool.call("m1", msgs)).meta["item_id"] == "c"


def test_no_response_text_gives_empty_text_score_in_meta_and_priced_estimate():
    pool = replay_pool(dataset())
    r = run(pool.call("m1", user("What is 2+2?")))
    assert r.text == "" and r.meta["score"] == 1.0 and r.meta["tokens_estimated"] and r.meta["cost_from_prices"]
    assert r.output_tokens == 0 and r.cost == pytest.approx(r.input_tokens * 1.0 / 1e6)


def test_unknown_query_and_unrecorded_pair_raise_unknown_query():
    pool = replay_pool(dataset())
    with pytest.raises(UnknownQuery, match="not in toy recording"):
        run(pool.call("m1", user("Something never recorded")))
    with pytest.raises(UnknownQuery, match="item_id 'zzz'"):
        run(pool.call("m1", user("x"), item_id="zzz"))
    with pytest.raises(UnknownQuery, match="no recorded score of 'm2' for query 'c'"):
        run(pool.call("m2", user("Capital of France?")))


def test_model_not_in_recording_is_a_config_error():
    ds = dataset()
    w = ReplayWorker("m3", data=ds)
    with pytest.raises(ConfigError, match="model 'm3' is not in"):
        run(w.chat(user("What is 2+2?")))


def test_llmrouter_replay_pool(shared_dir):
    from routers.pool import load_pool
    pool = load_pool("configs/pools/llmrouter_replay.yaml")
    ds = pool["gemma-2-9b-it"].data.dataset
    i = ds.ids.index(ds.split("test").ids[0])
    r = run(pool.call("gemma-2-9b-it", user(ds.prompts[i])))
    assert r.meta["score"] == ds.scores[i, ds.model_index("gemma-2-9b-it")]
    assert pool.prices("llama-3.1-nemotron-51b-instruct") == (0.9, 0.9)
