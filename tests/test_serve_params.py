"""Whose limits bind which worker call (issue 15 defect 2): the client's `max_tokens` and
`temperature` bind every call whose text can be the answer; the protocol's values apply where
the client set nothing, and to intermediate turns (Thinker, Verifier), which usage reports apart."""

from __future__ import annotations

import numpy as np
import pytest

from routers.serve.decision_log import read_log
from routers.serving_router import ServingRouter
from test_serve import client, make, serving, stub_pool  # tests/ is on sys.path
from trinity.config import ProtocolConfig
from trinity.protocol import run_episode


@pytest.fixture
def stub():
    from routers.pool.stub import start_stub_server
    url, stop = start_stub_server()
    yield url, stop.stub
    stop()


class _Features:
    def features(self, texts):
        return np.zeros((len(texts), 4))

    def count_tokens(self, texts):
        return [7] * len(texts)


class Scripted(ServingRouter):
    """TRINITY's protocol with a scripted head: Thinker, then Worker, then Verifier."""

    def __init__(self, name, workers, cfg):
        self.name, self.workers, self.cfg = name, list(workers), cfg

    def policy(self, feats, states):
        roles = {0: [9, 0, 0], 1: [0, 9, 0], 2: [0, 0, 9]}
        return np.array([[1.0, 0.0] + roles[len(s.steps)] for s in states])

    async def answer(self, messages, call, *, lam=0.0):
        return await run_episode(messages, featurizer=_Features(), policy=self.policy, call=call,
                                 workers=self.workers, cfg=self.cfg)


def test_client_limits_bind_the_answer_and_intermediate_turns_keep_the_protocol_caps(stub, tmp_path):
    url, st = stub
    pool = stub_pool(url, {"a": "model-a", "b": "model-b"})
    cfg = ProtocolConfig(max_turns=3, max_tokens=32, temperature=0.1, require_answer=True)
    app = make(pool, [Scripted("trinity-scripted", ["a", "b"], cfg)], tmp_path)
    long_q = [{"role": "user", "content": "please repeat these twelve words back to me right now thanks"}]
    with serving(app) as base:
        c = client(base)
        r = c.chat.completions.create(model="trinity-scripted", messages=long_q, max_tokens=3, temperature=1.5)
        sent = list(st.bodies)
        st.bodies.clear()
        r2 = c.chat.completions.create(model="trinity-scripted", messages=long_q)
        sent2 = list(st.bodies)
    route = r.model_extra["baton_route"]
    assert [s["role"] for s in route["steps"]] == ["thinker", "worker", "verifier"]
    assert [(b["max_tokens"], b["temperature"]) for b in sent] == [(32, 0.1), (3, 1.5), (32, 0.1)]
    assert [(b["max_tokens"], b["temperature"]) for b in sent2] == [(32, 0.1)] * 3
    # the answer obeyed the client's cap; the intermediate turns are reported apart in usage
    assert r.choices[0].finish_reason == "length"
    answer_step = route["steps"][1]
    assert answer_step["output_tokens"] == 3
    u = r.usage.model_dump()
    inter = [route["steps"][0], route["steps"][2]]
    assert u["intermediate_tokens"]["output"] == sum(s["output_tokens"] for s in inter)
    assert u["intermediate_tokens"]["input"] == sum(s["input_tokens"] for s in inter)
    assert u["worker_tokens"]["output"] == u["intermediate_tokens"]["output"] + answer_step["output_tokens"]
    recs = read_log(tmp_path / "log.jsonl")
    assert recs[0]["tokens"]["intermediate_output"] == u["intermediate_tokens"]["output"]
    assert r2.choices[0].finish_reason == "stop"
