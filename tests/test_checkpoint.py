"""Checkpoint defects of issue 15: training onto an existing checkpoint (7), router.safetensors
readable like the rest (10), a truncated or garbage router.safetensors in eval and serve, and
`export --out` onto a file; plus configs found by name (`--config route`)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from routers.cli import main

WORKERS = ["mistral-nemo", "llama-3.1-8b", "qwen-2.5-7b", "mistral-small-3.1", "gemma-3-27b", "gpt-4o"]


@pytest.fixture(scope="module")
def tiny():
    from trinity.coordinator import Coordinator
    return Coordinator("tiny", batch_size=4)


@pytest.fixture
def ckpt(tiny, tmp_path):
    """A selection-head TRINITY checkpoint over the simulated pool's workers."""
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.heads import make_head
    head = make_head("selection", len(WORKERS), tiny.d, 0)
    head.set_flat(np.random.default_rng(0).standard_normal(head.n_params))
    return save(tmp_path / "ck", coordinator=tiny, head=head, workers=WORKERS, protocol=ProtocolConfig(),
                training={"data": {"pool": "simulated"}}, mean_cost=np.full(len(WORKERS), 1e-4))


def readable(p) -> bool:
    return stat.S_IMODE(os.stat(p).st_mode) & 0o044 == 0o044


def test_router_safetensors_is_readable_like_the_rest(ckpt):
    assert readable(ckpt / "config.json")
    assert readable(ckpt / "router.safetensors")   # safetensors itself writes 0600


def test_export_makes_every_file_readable(ckpt, tmp_path):
    os.chmod(ckpt / "router.safetensors", 0o600)     # a checkpoint written before the fix
    assert main(["export", str(ckpt), "--out", str(tmp_path / "ex"), "--pool", "simulated"]) == 0
    files = [p for p in (tmp_path / "ex").rglob("*") if p.is_file()]
    assert any(p.name == "router.safetensors" for p in files) and all(readable(p) for p in files)


def test_export_out_onto_a_file_is_a_clear_error(ckpt, tmp_path, capsys):
    f = tmp_path / "taken.txt"
    f.write_text("mine")
    assert main(["export", str(ckpt), "--out", str(f), "--pool", "simulated"]) == 2
    assert f"--out {f}: a file, not a directory" in capsys.readouterr().err
    assert f.read_text() == "mine"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_router_safetensors_in_eval_and_serve(ckpt, damage, capsys, monkeypatch):
    w = ckpt / "router.safetensors"
    w.write_bytes(w.read_bytes()[:40] if damage == "truncated" else b"this is not a safetensors file at all")
    assert main(["eval", "--data", "embedded", "--routers", f"t={ckpt}", "--bootstrap", "10"]) == 2
    err = capsys.readouterr().err
    assert f"{w}: not a readable safetensors file" in err and "Traceback" not in err
    import uvicorn
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started on a corrupt checkpoint"))
    assert main(["serve", "--router", str(ckpt), "--pool", "simulated", "--log", str(ckpt.parent / "d.jsonl")]) == 2
    assert f"{w}: not a readable safetensors file" in capsys.readouterr().err


def test_train_refuses_an_existing_checkpoint_unless_asked(ckpt, capsys):
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    args = ["train", "trinity", "--config", "route", "--out", str(ckpt), "coordinator.model=tiny",
            "train.iterations=1", "train.popsize=4", "data.limit=30"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {ckpt}: already holds README.md, config.json, router.safetensors" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before          # nothing touched
    assert main(["train", "conductor", "--config", "demo", "--out", str(ckpt)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--resume"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0                                    # --config by name, replaced
    assert (ckpt / "router.safetensors").read_bytes() != before["router.safetensors"]
    assert (ckpt / "metrics.json").is_file()


def test_config_by_name_lists_the_shipped_ones(capsys, tmp_path):
    assert main(["train", "trinity", "--config", "nosuch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nosuch: no such config file, nor a shipped trinity config" in err and "route" in err


def test_baseline_checkpoint_bad_input_names_the_file(tmp_path):
    import json

    import baton
    from routers.errors import CheckpointError
    ds = baton.load_dataset("embedded")
    path = baton.baselines.KNN().fit(ds.split("train")).save_pretrained(tmp_path / "knn")
    (path / "state.npz").rename(tmp_path / "state.npz")
    with pytest.raises(CheckpointError, match=r"knn: missing state.npz"):
        baton.baselines.KNN.from_pretrained(path)
    (path / "state.npz").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="learned state is unreadable"):
        baton.from_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "format_version": 2}))
    with pytest.raises(CheckpointError, match=r"config.json: format_version 2"):
        baton.baselines.KNN.from_pretrained(path)


def test_conductor_checkpoint_without_its_weights_names_the_folder(tmp_path):
    from test_hub import make_conductor

    import baton
    from routers.errors import CheckpointError
    path = make_conductor(tmp_path / "c")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"c: the policy model cannot be loaded"):
        baton.ConductorRouter.from_pretrained(path)
