"""Hub-native checkpoints for every router kind: `push_to_hub` through `huggingface_hub.HfApi` whose
HTTP transport is a local stand-in for the Hub (it stores each commit the way the Hub cache lays
out a download: snapshots/<sha>/..., refs/main), then `from_pretrained("<owner>/<name>")` by repo
id from that cache with HF_HUB_OFFLINE=1, with identical routing decisions on 100 questions."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import baton
from routers.errors import CheckpointError, ConfigError


class HubStandIn:
    """The Hub endpoints an upload uses (create repo, validate the card's YAML, preupload, commit),
    served from memory; each commit becomes a snapshot in a local Hub cache."""

    def __init__(self, cache: Path):
        self.cache, self.requests, self.commits = cache, [], {}

    def __call__(self, request):
        import httpx2
        self.requests.append((request.method, request.url.path))
        path = request.url.path
        if path == "/api/repos/create":
            body = json.loads(request.content)
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{body['organization']}/{body['name']}"})
        if path == "/api/validate-yaml":   # the card's front matter must be a YAML mapping
            import yaml
            text = json.loads(request.content)["content"]
            ok = text.startswith("---\n") and isinstance(yaml.safe_load(text.split("---\n")[1]), dict)
            return httpx2.Response(200 if ok else 400, json={"errors": [] if ok else [{"message": "bad metadata"}],
                                                              "warnings": []})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in files]})
        if "/commit/" in path:
            repo = path.split("/api/models/")[1].split("/commit/")[0]
            lines = [json.loads(x) for x in request.content.splitlines() if x.strip()]
            files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
            listing = sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())
            sha = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
            root = self.cache / f"models--{repo.replace('/', '--')}"
            for name, data in files.items():
                (root / "snapshots" / sha / name).parent.mkdir(parents=True, exist_ok=True)
                (root / "snapshots" / sha / name).write_bytes(data)
            (root / "refs").mkdir(parents=True, exist_ok=True)
            (root / "refs" / "main").write_text(sha)
            self.commits[repo] = files
            return httpx2.Response(200, json={"commitUrl": f"https://huggingface.co/{repo}/commit/{sha}",
                                              "commitOid": sha, "pullRequestUrl": None})
        return httpx2.Response(404, json={"error": f"stand-in does not serve {path}"})


@pytest.fixture
def hub(tmp_path):
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import _http
    assert constants.HF_HUB_OFFLINE, "loading by id must be tested offline, from the local Hub cache"
    stand_in = HubStandIn(tmp_path / "hub-cache")
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(stand_in)))
    yield stand_in
    _http.set_client_factory(_http.default_client_factory)


def make_conductor(out: Path) -> Path:
    """An (untrained) Conductor checkpoint: the default config's tiny policy over the toy pool."""
    from conductor.checkpoint import save_conductor
    from conductor.config import load_config
    from conductor.env import ConductorEnv
    from conductor.policy import load_policy
    cfg = load_config(None)
    model, tok = load_policy(cfg.policy.model)
    save_conductor(model, tok, ConductorEnv.from_config(cfg), out)
    f = out / "conductor_config.json"   # short workflows keep 100 greedy generations fast on a CPU
    f.write_text(json.dumps({**json.loads(f.read_text()), "max_new_tokens": 12}))
    return out


@pytest.fixture(scope="module")
def ds():
    return baton.load_dataset("embedded")


@pytest.fixture(scope="module")
def questions(ds):
    return list(ds.split("test").prompts[:100])


def _trinity(tmp: Path):
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.coordinator import Coordinator
    from trinity.heads import make_head
    workers = ["mistral-nemo", "llama-3.1-8b", "qwen-2.5-7b", "mistral-small-3.1", "gemma-3-27b", "gpt-4o"]
    coord = Coordinator("tiny", batch_size=8)
    head = make_head("selection", len(workers), coord.d, 0)
    head.set_flat(np.random.default_rng(1).standard_normal(head.n_params))
    save(tmp / "t", coordinator=coord, head=head, workers=workers, protocol=ProtocolConfig(),
         training={"data": {"train": "embedded"}}, metrics={"test": {"accuracy": 0.61, "accuracy_ci": [0.55, 0.67]}},
         mean_cost=np.linspace(1e-4, 1e-3, len(workers)))
    return baton.TrinityRouter.load(tmp / "t", coordinator=coord)


# every kind with a checkpoint (the oracle is a ceiling that reads the evaluation data's scores: nothing to ship)
KINDS = ["trinity", "conductor", "random", "best-single", "knn", "mlp", "mf", "sw-elo", "cascade"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_push_then_load_by_hub_id_routes_identically(kind, hub, ds, questions, tmp_path):
    from huggingface_hub import ModelCard
    if kind == "trinity":
        router, cls = _trinity(tmp_path), baton.TrinityRouter
    elif kind == "conductor":
        cls = baton.ConductorRouter
        router = cls.from_pretrained(make_conductor(tmp_path / "c"))
    else:
        from routers.registry import baseline_class
        cls = baseline_class(kind)
        router = cls().fit(ds.split("train"), ds.split("validation"))
    url = router.push_to_hub(f"baton-test/{kind}", token="hf_stand_in")
    assert url.startswith(f"https://huggingface.co/baton-test/{kind}/commit/")
    pushed = hub.commits[f"baton-test/{kind}"]
    assert "README.md" in pushed and ("config.json" in pushed or "conductor_config.json" in pushed)

    loaded = cls.from_pretrained(f"baton-test/{kind}", cache_dir=hub.cache)      # by repo id, offline
    assert type(loaded) is type(router)
    if kind == "conductor":   # its decision is the workflow the policy writes (greedy)
        prompts = [router.prompt(q) for q in questions]
        assert loaded.generator.texts(prompts) == router.generator.texts(prompts)
        workers = router.workers
    else:
        if kind == "cascade":  # it routes on the answers the models gave: the recorded test responses
            for r in (router, loaded):
                r.attach_responses(ds.split("test"))
        np.testing.assert_array_equal(loaded.route(questions), router.route(questions))   # one decision each
        np.testing.assert_array_equal(loaded.predict_quality(questions), router.predict_quality(questions))
        assert loaded.rank(questions[0]) == router.rank(questions[0])                    # the full ranking
        workers = router.trinity.workers if kind == "trinity" else router.models
    meta = ModelCard(pushed["README.md"].decode()).data.to_dict()
    assert meta["library_name"] == "baton" and meta["baton"]["router_type"] == kind
    assert meta["baton"]["workers"] == list(workers)
    if kind == "trinity":
        assert meta["baton"]["coordinator"]["fingerprint"]
        assert "| test accuracy | 0.61 | [0.55, 0.67] |" in pushed["README.md"].decode()    # metric with interval
    assert baton.from_pretrained(f"baton-test/{kind}", cache_dir=hub.cache).__class__ is type(router)


def test_push_without_a_token_fails_before_any_upload(hub, ds, monkeypatch):
    import huggingface_hub
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    router = baton.baselines.BestSingle().fit(ds.split("train"))
    with pytest.raises(ConfigError, match="no Hugging Face token.*nothing was uploaded"):
        router.push_to_hub("baton-test/best")
    with pytest.raises(ConfigError, match="not a Hub repo id"):
        router.push_to_hub("no-owner", token="hf_x")
    assert hub.requests == []


def test_hub_id_absent_from_the_cache_names_the_repo(tmp_path):
    with pytest.raises(CheckpointError, match=r"baton-test/absent.*not in the local Hub cache"):
        baton.TrinityRouter.from_pretrained("baton-test/absent", cache_dir=tmp_path)


def test_revision_selects_the_commit(hub, ds):
    """Two pushes to one repo: the default loads the latest, `revision=<commit>` the earlier one."""
    train = ds.split("train")
    first = baton.baselines.BestSingle().fit(train)
    best = first.models[int(np.nanmean(train.scores, axis=0).argmax())]
    rest = train.select_models([m for m in train.models if m != best])
    second = baton.baselines.BestSingle().fit(rest)
    url1 = first.push_to_hub("baton-test/best", token="hf_stand_in")
    second.push_to_hub("baton-test/best", token="hf_stand_in")
    sha1 = url1.rsplit("/", 1)[1]
    old = baton.baselines.BestSingle.from_pretrained("baton-test/best", revision=sha1, cache_dir=hub.cache)
    new = baton.baselines.BestSingle.from_pretrained("baton-test/best", cache_dir=hub.cache)
    assert old.models == first.models and new.models == second.models and best not in new.models


def test_serve_loads_a_router_by_hub_id(hub, ds, monkeypatch):
    from huggingface_hub import constants

    from routers.pool.config import load_pool
    from routers.serve.loading import load_serving_router
    knn = baton.baselines.KNN().fit(ds.split("train"))
    knn.push_to_hub("baton-test/served", token="hf_stand_in")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub.cache))      # the default cache, offline
    router = load_serving_router("knn-hub=baton-test/served", load_pool("simulated"))
    assert router.name == "knn-hub" and router.workers == knn.models
    with pytest.raises(CheckpointError, match="baton-test/absent.*not in the local Hub cache"):
        load_serving_router("baton-test/absent", load_pool("simulated"))


def test_conductor_metrics_reach_the_card(tmp_path):
    from huggingface_hub import ModelCard

    from conductor.checkpoint import save_conductor
    from conductor.config import load_config
    from conductor.env import ConductorEnv
    from conductor.policy import load_policy
    cfg = load_config(None)
    model, tok = load_policy(cfg.policy.model)
    path = save_conductor(model, tok, ConductorEnv.from_config(cfg), tmp_path / "c",
                          metrics={"eval_after": {"accuracy": 0.5, "n": 30}})
    card = ModelCard.load(path / "README.md")
    assert card.data.to_dict()["baton"]["metrics"]["eval_after"]["accuracy"] == 0.5
    assert "| eval_after accuracy | 0.5 | not recorded |" in card.text
