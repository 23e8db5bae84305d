"""TRINITY model side: heads, SVF, transcripts, coordinator features and cache, protocol,
checkpoints, serving. Uses the packaged tiny random Llama (1M params) and fake pools."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from routers.errors import CheckpointError, ConfigError
from routers.pool.base import WorkerReply
from trinity.config import ProtocolConfig
from trinity.heads import ROLES, make_head
from trinity.protocol import HeadPolicy, run_episodes, start
from trinity.svf import SVF, default_targets


# -- heads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,kw,n", [
    ("linear", {}, 10_240), ("lowrank", {"rank": 20}, 20_680), ("sparse", {}, 11_266),
    ("blockdiag", {"blocks": 2}, 5_120), ("blockdiag", {"blocks": 10}, 1_024), ("selection", {}, 7_168)])
def test_head_parameter_counts_match_paper_table3(kind, kw, n):
    h = make_head(kind, 7, 1024, **kw)
    assert h.n_params == n
    assert h.n_out == (7 if kind == "selection" else 10)


@pytest.mark.parametrize("kind,kw", [("linear", {}), ("lowrank", {"rank": 3}), ("sparse", {}),
                                     ("blockdiag", {"blocks": 3}), ("selection", {})])
def test_population_logits_equal_per_candidate_logits(kind, kw):
    rng = np.random.default_rng(0)
    h = make_head(kind, 4, 12, **kw)
    X = rng.standard_normal((5, h.n_params))
    F = rng.standard_normal((9, 12)).astype(np.float32)
    pop = h.population_logits(X, F)
    assert pop.shape == (5, 9, h.n_out)
    for p in range(5):
        h.set_flat(X[p])
        np.testing.assert_allclose(pop[p], F @ h.weight().T, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pop[p], h.logits(torch.from_numpy(F)), rtol=1e-4, atol=1e-4)
    agents, roles = h.split(pop)
    assert agents.shape[-1] == 4 and roles.shape[-1] == h.n_roles


def test_blockdiag_is_block_diagonal_and_heads_refuse_bad_input():
    h = make_head("blockdiag", 3, 10, blocks=2)   # 6 outputs in 2 row groups, 10 features in 2 column groups
    W = h.weight(np.ones(h.n_params))
    assert W[:3, :5].all() and W[3:, 5:].all() and not W[:3, 5:].any() and not W[3:, :5].any()
    with pytest.raises(ConfigError, match="expected 30 parameters"):
        h.set_flat(np.zeros(30 + 1))
    with pytest.raises(ConfigError, match=r"features must be \(N, 10\)"):
        h.logits(np.zeros((2, 9)))
    with pytest.raises(ConfigError, match="head.kind"):
        make_head("wide", 3, 10)
    with pytest.raises(ConfigError, match="head.blocks"):
        make_head("blockdiag", 3, 10, blocks=7)


def test_sparse_gate_switches_feature_columns_off():
    h = make_head("sparse", 2, 6)
    x = np.ones(h.n_params)
    nw = h.n_out * h.d
    x[nw:nw + 6] = [5, 5, 5, -5, -5, -5]   # gates g; t = 0; log-sharpness s = 2
    x[-2], x[-1] = 0.0, 2.0
    W = h.weight(x)
    assert (W[:, :3] > 0.99).all() and (W[:, 3:] < 1e-6).all()


# -- SVF -----------------------------------------------------------------------------------------
def _llama(tied: bool, seed: int = 0):  # a 3-block Llama built from config (fast)
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).eval()


def test_svf_default_targets_follow_tying():
    untied, tied = default_targets(_llama(False)), default_targets(_llama(True))
    assert untied[:7] == [f"model.layers.1.{m}" for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                          "mlp.down_proj")]
    assert untied[7:] == ["model.embed_tokens", "lm_head"] and tied[7:] == ["model.embed_tokens"]
    with pytest.raises(ConfigError, match="svf.layer"):
        default_targets(_llama(False), layer=5)


def test_svf_preserves_energy_changes_weights_and_restores_exactly():
    model = _llama(False)
    svf = SVF(model)
    assert svf.n_params == sum(svf.sizes) == 7 * 16 + 16 + 16
    before = {n: dict(model.named_modules())[n].weight.detach().clone() for n in svf.names}
    e0 = {n: svf.energy(n) for n in svf.names}
    d = np.random.default_rng(1).uniform(-0.5, 0.5, svf.n_params)
    svf.apply(d)
    assert svf.offset_hash() != "none"
    for n in svf.names:
        w = dict(model.named_modules())[n].weight.detach()
        assert not torch.allclose(w, before[n])                         # it did something
        assert svf.energy(n) == pytest.approx(e0[n], rel=1e-4)          # sum of singular values kept
        s_new = torch.linalg.svdvals(w.float())
        s_old = torch.linalg.svdvals(before[n].float())
        dd = svf.split(d)[n]
        expected = np.sort((s_old.numpy() * (1 + dd)) * (s_old.sum().item() / (s_old.numpy() * (1 + dd)).sum()))
        np.testing.assert_allclose(np.sort(s_new.numpy()), expected, rtol=1e-3)
    svf.restore()
    for n in svf.names:
        assert torch.equal(dict(model.named_modules())[n].weight, before[n])
    with svf.applied(d):
        assert svf.offset_hash() != "none"
    assert svf.offset_hash() == "none"
    with pytest.raises(ConfigError, match="expected 144 offsets"):
        svf.apply(np.zeros(3))


def test_svf_uniform_offset_is_undone_by_energy_preservation():
    """A uniform d scales every singular value alike, which the renormalization cancels: W' = W up
    to rounding. This also checks the SVD factors reproduce W (float64 factorization)."""
    model = _llama(False)
    svf = SVF(model)
    before = {n: dict(model.named_modules())[n].weight.detach().clone() for n in svf.names}
    svf.apply(np.full(svf.n_params, 0.3))
    for n in svf.names:
        torch.testing.assert_close(dict(model.named_modules())[n].weight, before[n], rtol=0, atol=1e-6)


# -- transcripts and the coordinator -------------------------------------------------------------
def test_render_transcript():
    from trinity.coordinator import render_transcript
    assert render_transcript([{"role": "user", "content": "What is 2+2?"}, ("worker", "4")]) == \
        "user: What is 2+2?\nworker: 4"
    cut = render_transcript([("worker", "A" * 50 + "B" * 50)], max_chars=20)
    assert cut == "worker: " + "A" * 10 + " ... " + "B" * 10
    with pytest.raises(ConfigError, match="turn 1"):
        render_transcript([("user", "x"), {"content": "no role"}])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    import os
    d = tmp_path_factory.mktemp("baton_cache")
    old = os.environ.get("BATON_CACHE")
    os.environ["BATON_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("BATON_CACHE")
    else:
        os.environ["BATON_CACHE"] = old


@pytest.fixture(scope="module")
def tiny(cache):
    from trinity.coordinator import Coordinator
    return Coordinator("tiny", batch_size=4)


TEXTS = ["user: hello", "user: what is the capital of France? Answer briefly.",
         "user: 2+2\nworker: 4\nverifier: VERDICT: ACCEPT", "user: a"]


def test_gguf_conversion_keeps_weights(tiny):
    import importlib.util
    from transformers import AutoModelForCausalLM
    d = importlib.util.find_spec("tinycoder").submodule_search_locations[0] + "/models"
    ref = AutoModelForCausalLM.from_pretrained(d, gguf_file="tiny.gguf", dtype=torch.float32)
    ours = tiny.model.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(v, ours[k]), k


def _manual(coord, text, layer, pos):
    ids = coord.tokenizer(text, add_special_tokens=True, truncation=True, max_length=coord.max_tokens)["input_ids"]
    with torch.no_grad():
        hs = coord.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer]
    return hs[0, max(pos, -len(ids)) if pos < 0 else min(pos, len(ids) - 1)].numpy()


def test_features_take_the_configured_token_and_layer_regardless_of_padding(tiny):
    F = tiny.features(TEXTS).numpy()
    assert F.shape == (4, tiny.d) and tiny.d == 16
    for i, t in enumerate(TEXTS):   # batch of mixed lengths (left padding) == each text alone
        np.testing.assert_allclose(F[i], _manual(tiny, t, -1, -2), atol=1e-5)
    from trinity.coordinator import Coordinator
    other = Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", layer=1, position=-1, disk_cache=False)
    G = other.features(TEXTS).numpy()
    for i, t in enumerate(TEXTS):
        np.testing.assert_allclose(G[i], _manual(tiny, t, 1, -1), atol=1e-5)
    assert not np.allclose(F, G)
    first = Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", position=1, disk_cache=False)
    np.testing.assert_allclose(first.features(TEXTS[:1]).numpy()[0], _manual(tiny, TEXTS[0], -1, 1), atol=1e-5)


def test_feature_cache_memory_disk_and_svf_keys(tiny, monkeypatch):
    from trinity.coordinator import Coordinator
    texts = ["user: cache me", "user: and me too"]
    F = tiny.features(texts).numpy()
    fresh = Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", batch_size=4)
    monkeypatch.setattr(fresh, "_forward", lambda ids: (_ for _ in ()).throw(AssertionError("recomputed")))
    np.testing.assert_array_equal(fresh.features(texts).numpy(), F)   # from the disk shards
    monkeypatch.undo()
    svf = tiny.enable_svf()
    try:
        # non-uniform: a uniform offset is undone by the energy renormalization (W' = W)
        with svf.applied(np.linspace(-0.3, 0.3, svf.n_params)):
            G = tiny.features(texts).numpy()
        assert not np.allclose(F, G)                                     # new key, recomputed
        np.testing.assert_array_equal(tiny.features(texts).numpy(), F)   # offsets gone, old key
    finally:
        svf.restore()
        tiny.svf = None
    assert tiny.count_tokens(["user: hello"]) == [len(tiny.tokenizer("user: hello")["input_ids"])]
    import hashlib
    seeded = np.full((1, tiny.d), 7.0, dtype=np.float32)
    assert tiny.import_features([hashlib.sha256(b"user: imported").hexdigest()], seeded) == 1
    np.testing.assert_array_equal(tiny.features(["user: imported"]).numpy(), seeded)
    with pytest.raises(ConfigError, match="import_features"):
        tiny.import_features(["x"], np.zeros((1, 3)))


def test_truncation_sides(tiny):
    from trinity.coordinator import Coordinator
    text = "user: " + " ".join(f"w{i}" for i in range(40))
    full = tiny.tokenizer(text)["input_ids"]
    assert len(full) > 8
    cut = {side: Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", max_tokens=8, truncation_side=side,
                                        disk_cache=False)._encode([text])[0] for side in ("right", "left", "middle")}
    assert cut["right"] == full[:8] and cut["left"] == full[-8:] and cut["middle"] == full[:4] + full[-4:]
    with pytest.raises(ConfigError, match="truncation_side"):
        Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", truncation_side="top")


def test_coordinator_config_errors(tiny):
    from trinity.coordinator import Coordinator
    with pytest.raises(ConfigError, match="coordinator.layer"):
        Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", layer=9)
    with pytest.raises(ConfigError, match="does not exist"):
        Coordinator("/nonexistent/model.gguf")
    with pytest.raises(ConfigError, match="cannot load 'no-such-org/no-such-model'"):
        Coordinator("no-such-org/no-such-model")


# -- protocol ------------------------------------------------------------------------------------
class FakeFeaturizer:
    def features(self, texts):
        turns = [sum(t.count(f"\n{r}: ") for r in ROLES) for t in texts]   # feature = turn number
        return torch.tensor([[float(n), 1.0] for n in turns])

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


class Scripted:
    """Per-turn logits: turn t -> (agent index, role) from a script."""
    def __init__(self, script, L=3):
        self.script, self.L = script, L

    def __call__(self, feats, states):
        out = np.zeros((len(states), self.L + 3))
        for i, f in enumerate(np.asarray(feats)):
            agent, role = self.script[min(int(f[0]), len(self.script) - 1)]
            out[i, agent] = 5.0
            out[i, self.L + ROLES.index(role)] = 5.0
        return out


def fake_call(log, texts=None):
    async def call(candidates, messages, params):
        log.append((list(candidates), params["role"], messages))
        role = params["role"]
        text = (texts or {}).get((len(log) - 1, role)) or {
            "thinker": "[thinker] plan", "worker": f"answer from {candidates[0]}",
            "verifier": "VERDICT: ACCEPT"}[role]
        return WorkerReply(text=text, worker=candidates[0], model=candidates[0], input_tokens=10,
                           output_tokens=5, cost=0.01, latency_s=0.1)
    return call


WORKERS = ["a", "b", "c"]


def run(states, policy, call, cfg=None, sample=False):
    return asyncio.run(run_episodes(states, featurizer=FakeFeaturizer(), policy=policy, call=call,
                                    workers=WORKERS, cfg=cfg or ProtocolConfig(max_turns=5), sample=sample))


def test_protocol_worker_then_verifier_accept_stops():
    log = []
    (ep,) = run([start([{"role": "user", "content": "Q?"}], item_id="q1")],
                Scripted([(1, "worker"), (2, "verifier"), (0, "worker")]), fake_call(log))
    assert [(s.worker, s.role) for s in ep.steps] == [("b", "worker"), ("c", "verifier")]
    assert ep.answer == "answer from b" and ep.meta["accepted"] and ep.meta["turns"] == 2
    assert log[0][0] == ["b", "a", "c"]                          # full ranking, chosen first
    assert log[0][1] == "worker" and ep.steps[1].meta["accepted"]
    assert ep.cost == pytest.approx(0.02) and ep.worker_input_tokens == 20
    assert ep.orchestration_input_tokens == len("user: Q?".split()) + len("user: Q?\nworker: answer from b".split())
    assert log[1][2][-2:] == [{"role": "assistant", "name": "worker", "content": "answer from b"},
                              {"role": "user", "content": "Continue as the Verifier."}]
    assert log[1][2][0]["content"] == ProtocolConfig().verifier_prompt


def test_protocol_thinker_suggestion_and_last_worker_answer():
    log = []
    texts = {(0, "thinker"): "think <suggested_role>worker</suggested_role>",
             (2, "verifier"): "VERDICT: REJECT"}
    (ep,) = run([start([{"role": "user", "content": "Q?"}])],
                Scripted([(0, "thinker"), (1, "verifier"), (2, "verifier"), (0, "worker"), (1, "thinker")]),
                fake_call(log, texts))
    roles = [(s.worker, s.role, s.meta["role_source"]) for s in ep.steps]
    assert roles == [("a", "thinker", "head"), ("b", "worker", "thinker"), ("c", "verifier", "head"),
                     ("a", "worker", "head"), ("b", "thinker", "head")]
    assert ep.answer == "answer from a" and not ep.meta["accepted"] and len(ep.steps) == 5


def test_protocol_require_answer():
    """Paper rules: thinking to the end, or a verifier accepting nothing, answers "". With
    require_answer the accept is ignored and the last turn is a Worker turn."""
    q = [{"role": "user", "content": "Q?"}]
    think = Scripted([(0, "thinker")])
    (ep,) = run([start(q)], think, fake_call([]), cfg=ProtocolConfig(max_turns=3))
    assert ep.answer == "" and [s.role for s in ep.steps] == ["thinker"] * 3
    (ep,) = run([start(q)], think, fake_call([]), cfg=ProtocolConfig(max_turns=3, require_answer=True))
    assert [(s.role, s.meta["role_source"]) for s in ep.steps] == [("thinker", "head")] * 2 + [("worker", "final")]
    assert ep.answer == "answer from a"
    verify_first = Scripted([(2, "verifier"), (1, "worker"), (2, "verifier")])
    (ep,) = run([start(q)], verify_first, fake_call([]), cfg=ProtocolConfig(max_turns=5))
    assert ep.answer == "" and ep.meta["accepted"] and len(ep.steps) == 1
    (ep,) = run([start(q)], verify_first, fake_call([]), cfg=ProtocolConfig(max_turns=5, require_answer=True))
    assert [s.role for s in ep.steps] == ["verifier", "worker", "verifier"] and ep.answer == "answer from b"
    assert ep.steps[0].meta["accept_ignored"] and ep.meta["accepted"]


def test_protocol_masks_roles_and_samples_deterministically():
    cfg = ProtocolConfig(max_turns=4, roles=["worker", "verifier"])
    head = make_head("linear", 3, 2)
    head.set_flat(np.zeros(head.n_params))     # uniform: sampling decides everything
    def once(seed):
        log = []
        eps = run([start([{"role": "user", "content": "Q?"}], rng=np.random.default_rng([seed, i])) for i in range(6)],
                  HeadPolicy(head), fake_call(log), cfg=cfg, sample=True)
        return [[(s.worker, s.role) for s in e.steps] for e in eps]
    a, b, c = once(1), once(1), once(2)
    assert a == b and a != c
    assert all(r != "thinker" for ep in a for _, r in ep)
    assert len({w for ep in a for w, _ in ep}) > 1


def test_population_policy_and_roles_free_head():
    head = make_head("linear", 3, 2)
    X = np.zeros((2, head.n_params))
    X[0, 0 * 2 + 1] = X[0, (3 + 1) * 2 + 1] = 9.0      # candidate 0: agent a, role worker
    X[1, 2 * 2 + 1] = X[1, (3 + 2) * 2 + 1] = 9.0      # candidate 1: agent c, role verifier
    states = [start([{"role": "user", "content": "Q?"}], tag=t) for t in (0, 1)]
    eps = run(states, HeadPolicy(head, X), fake_call([]), cfg=ProtocolConfig(max_turns=2))
    assert [(s.worker, s.role) for s in eps[0].steps] == [("a", "worker")] * 2
    assert [(s.worker, s.role) for s in eps[1].steps] == [("c", "verifier")] and eps[1].answer == ""
    sel = make_head("selection", 3, 2)
    (ep,) = run([start([{"role": "user", "content": "Q?"}])], HeadPolicy(sel), fake_call([]),
                cfg=ProtocolConfig(max_turns=2))
    assert [s.role for s in ep.steps] == ["worker", "worker"]


# -- checkpoints and serving ---------------------------------------------------------------------
def _save(tiny, path, kind="linear", svf=True, workers=WORKERS):
    from trinity.checkpoint import save
    head = make_head(kind, len(workers), tiny.d)
    head.set_flat(np.random.default_rng(3).standard_normal(head.n_params))
    s = None
    if svf:
        s = tiny.enable_svf()
        s.apply(np.random.default_rng(4).uniform(-0.2, 0.2, s.n_params))
    save(path, coordinator=tiny, head=head, workers=workers, protocol=ProtocolConfig(max_turns=3),
         svf=s, training={"seed": 0}, metrics={"accuracy": 0.5}, mean_cost=[0.001, 0.002, 0.003])
    feats = tiny.features(["user: round trip"]).numpy()
    offsets = None
    if s is not None:
        offsets = s.offsets
        s.restore()
        tiny.svf = None
    return head, offsets, feats


def test_checkpoint_round_trip(tiny, tmp_path):
    import trinity
    from safetensors.numpy import load_file
    head, svf, feats = _save(tiny, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["router_type"] == "trinity" and cfg["workers"] == WORKERS and cfg["roles"] == list(ROLES)
    assert cfg["coordinator"]["fingerprint"] == tiny.fingerprint and cfg["protocol"]["max_turns"] == 3
    assert set(load_file(str(tmp_path / "ck" / "router.safetensors"))) == {"head", "svf_offsets"}
    m = trinity.load(tmp_path / "ck", device="cpu")            # builds its own coordinator
    np.testing.assert_array_equal(m.head.get_flat(), head.get_flat())
    assert np.any(svf)
    np.testing.assert_array_equal(m.coordinator.svf.offsets, svf)
    np.testing.assert_allclose(m.coordinator.features(["user: round trip"]).numpy(), feats, atol=1e-6)
    assert m.protocol.max_turns == 3 and m.workers == WORKERS


def test_checkpoint_refuses_mismatches(tiny, tmp_path):
    from trinity.checkpoint import load
    from trinity.coordinator import Coordinator
    _save(tiny, tmp_path / "ck", svf=False)
    other = Coordinator.from_model(_llama(False, seed=1), tiny.tokenizer, "other", disk_cache=False)
    with pytest.raises(CheckpointError, match="another model"):
        load(tmp_path / "ck", coordinator=other)
    with pytest.raises(CheckpointError, match="lacks worker.*c"):
        load(tmp_path / "ck", coordinator=tiny, workers=["a", "b", "z"])
    moved = Coordinator.from_model(tiny.model, tiny.tokenizer, "tiny", position=-1, disk_cache=False)
    with pytest.raises(CheckpointError, match="position"):
        load(tmp_path / "ck", coordinator=moved)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    (tmp_path / "ck" / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load(tmp_path / "ck", coordinator=tiny)
    (tmp_path / "ck" / "config.json").write_text(json.dumps({**cfg, "head": {**cfg["head"], "d": 8}}))
    with pytest.raises(CheckpointError, match="another model|'head' has"):
        load(tmp_path / "ck", coordinator=tiny)


def test_registry_router_and_serving(tiny, tmp_path):
    from routers.baselines.base import Router
    from routers.registry import load_checkpoint
    from routers.serving_router import ServingRouter
    _save(tiny, tmp_path / "ck", svf=False)
    r = load_checkpoint(tmp_path / "ck", coordinator=tiny)
    assert isinstance(r, Router) and r.needs_fit is False and r.models == WORKERS
    q = r.predict_quality(["hello", "what is 2+2?"])
    assert q.shape == (2, 3) and np.allclose(q.sum(1), 1.0)
    assert np.allclose(r.predict_cost(["hello"]), [[0.001, 0.002, 0.003]])
    r.save(tmp_path / "again")
    np.testing.assert_allclose(load_checkpoint(tmp_path / "again", coordinator=tiny).predict_quality(["hello"]), q[:1], rtol=1e-5)
    s = load_checkpoint(tmp_path / "ck", serving=True, coordinator=tiny, name="trinity-test")
    assert isinstance(s, ServingRouter) and s.name == "trinity-test" and s.describe()["mode"] == "multi-turn"
    log = []
    ep = asyncio.run(s.answer([{"role": "user", "content": "What is 2+2?"}], fake_call(log)))
    assert 1 <= len(ep.steps) <= 3 and ep.orchestration_input_tokens > 0
    assert any(st.role == "worker" for st in ep.steps) and ep.answer.startswith("answer from")
    # a head that only ever thinks: served, the last turn still answers (require_answer)
    think = np.zeros(len(WORKERS) + 3)
    think[0] = think[len(WORKERS) + ROLES.index("thinker")] = 5.0
    s.trinity.policy = lambda: (lambda feats, states: np.tile(think, (len(states), 1)))
    log = []
    ep = asyncio.run(s.answer([{"role": "user", "content": "think"}], fake_call(log)))
    assert [st.role for st in ep.steps] == ["thinker", "thinker", "worker"] and ep.answer.startswith("answer from")
    # roles-free selection head: one call, ranked by the softmax
    _save(tiny, tmp_path / "sel", kind="selection", svf=False)
    s = load_checkpoint(tmp_path / "sel", serving=True, coordinator=tiny)
    log = []
    ep = asyncio.run(s.answer([{"role": "user", "content": "hello"}], fake_call(log)))
    best = WORKERS[int(np.argmax(s.trinity.agent_logits(["user: hello"])[0]))]
    assert len(ep.steps) == 1 and ep.steps[0].role == "answer" and log[0][0][0] == best
    assert ep.orchestration_input_tokens == tiny.count_tokens(["user: hello"])[0]


# -- scripts/gpu_check.py ------------------------------------------------------------------------
def _gpu_check():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_exits_cleanly_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _gpu_check().main(["--out", str(tmp_path / "g.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert json.loads((tmp_path / "g.json").read_text())["cuda"] is False


def test_gpu_check_code_paths_on_cpu_small(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _gpu_check().main(["--allow-cpu", "--small", "--out", str(tmp_path / "g.json")]) == 0
    r = json.loads((tmp_path / "g.json").read_text())
    assert r["features"]["tokens_per_s"] > 0 and r["features"]["tokens"] == 32 * 32
    g = r["svf_generation"]
    assert g["popsize"] == int(4 + 3 * np.log(g["n_params"])) and g["head_params"] == 10 * 64
    assert g["svf_params"] == 64 + 32 + 32 + 64 + 64 + 64 + 64 + 64   # q k v o gate up down (block -2) + tied embeddings
    assert r["head_generation"]["candidates"] == 32
    sd = r["served_decision"]  # concurrent requests share forward passes through the MicroBatcher
    assert sd["n"] == sd["texts"] == 16 and sd["batches"] < 16 and sd["p99_s"] >= sd["p50_s"] > 0
    rt = r["checkpoint_round_trip"]["loads"]["cpu-float32"]   # on CUDA this also reads fp32 and bf16
    assert rt["agreement"] == 1.0 and rt["head_equal"] and rt["svf_equal"] and rt["max_abs_feature_diff"] < 1e-5
    only = _gpu_check().main(["--allow-cpu", "--small", "--only", "3", "--out", str(tmp_path / "g3.json")])
    r3 = json.loads((tmp_path / "g3.json").read_text())
    assert only == 0 and r3["sections"] == [3] and "head_generation" in r3 and "features" not in r3


def test_protocol_against_the_simulated_pool():
    """Thinker plan reaches the worker; the verifier grades that worker's answer; ACCEPT stops."""
    from routers.pool.config import load_pool
    from routers.tasks import get_task
    pool = load_pool("simulated")
    task = get_task("gsm8k")
    items = task.load(limit=4)
    pool.register(items)
    names = pool.names[:3]

    from routers.serving_router import pool_call
    call = pool_call(pool)
    states = [start([{"role": "user", "content": it.prompt}], item_id=it.id) for it in items]
    eps = asyncio.run(run_episodes(states, featurizer=FakeFeaturizer(), policy=Scripted(
        [(0, "thinker"), (1, "worker"), (2, "verifier"), (1, "worker"), (2, "verifier")], L=3),
        call=call, workers=names, cfg=ProtocolConfig(max_turns=5), sample=False))
    for ep, it in zip(eps, items):
        th, wk, ver = ep.steps[:3]
        assert (th.role, wk.role, ver.role) == ("thinker", "worker", "verifier")
        assert wk.reply.meta.get("thinker") == names[0]                 # the plan was seen
        assert ver.reply.meta["answer_correct"] == (task.grade(wk.reply.text, it) >= 0.5)
        verdicts = [s.reply.meta["verdict"] for s in ep.steps if s.role == "verifier"]
        assert len(ep.steps) == (3 if verdicts[0] == "ACCEPT" else 5)
        assert ep.meta["accepted"] == (verdicts[-1] == "ACCEPT")
        assert ep.answer == [s for s in ep.steps if s.role == "worker"][-1].reply.text
        assert ep.cost > 0


def test_in_memory_feature_cache_is_capped_oldest_first(cache):
    from trinity.coordinator import Coordinator
    coord = Coordinator("tiny", batch_size=4, disk_cache=False, max_cached=2)
    texts = ["user: one", "user: two", "user: three"]
    first = coord.features(texts)
    (mem,) = coord._mem.values()
    assert len(mem) == 2  # 'one' was evicted
    again = coord.features(texts[:1])  # recomputed, identical
    assert torch.allclose(again[0], first[0], atol=1e-6)
    assert len(mem) == 2


def test_unusable_devices_are_refused_with_the_setting_named(monkeypatch):
    from routers.model_files import check_device
    from trinity.coordinator import Coordinator
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="coordinator.device: 'cuda' asks for CUDA, but this torch"):
        Coordinator("tiny", device="cuda")
    with pytest.raises(ConfigError, match="encoder device: 'gpu0' is not a torch device"):
        from routers.embed import HFEncoder
        HFEncoder("x", device="gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="'cuda:3', but this machine has 1 CUDA"):
        check_device("cuda:3", "x")
    assert check_device("cpu") == "cpu" and check_device("cuda:0") == "cuda:0"
