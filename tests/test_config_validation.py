"""Bad config values are refused when the config is loaded (before any data, pool or model work),
by an error naming the field; never a traceback after training ran, never silently accepted
(issue 15, defects 8 and 9)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from conductor.config import load_config as load_conductor
from routers.errors import BatonError, CheckpointError, ConfigError
from routers.typedconfig import build, checked
from trinity.config import TrainConfig
from trinity.config import load_config as load_trinity
from trinity.fitness import FitnessResult
from trinity.optimizers import optimize
from trinity.trainer import STATE_FILE

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override,message", [
    ("grpo.learning_rate=-0.1", r"grpo\.learning_rate: must be > 0, got -0\.1"),
    ("train.prompts_per_step=0", r"train\.prompts_per_step: must be >= 1, got 0"),
    ("grpo.temperature=0", r"grpo\.temperature: must be > 0, got 0"),
    ("grpo.temperature=-1", r"grpo\.temperature: must be > 0"),
    ("grpo.max_completion_length=0", r"grpo\.max_completion_length: must be >= 1, got 0"),
    ("data.train_limit=0", r"data\.train_limit: must be >= 1, got 0"),
    ("data.train_limit=-3", r"data\.train_limit: must be >= 1"),
    ("warmstart.steps=-1", r"warmstart\.steps: must be >= 0, got -1"),
    ("grpo.seed=-1", r"grpo\.seed: must be >= 0, got -1"),
    ("data.seed=-5", r"data\.seed: must be >= 0, got -5"),
    ("policy.model=''", r"policy\.model: must not be empty"),
    ("policy.model=null", r"policy\.model: expected a string, got None"),
    ("grpo.max_steps=-1", r"grpo\.max_steps: must be >= 1, got -1"),
    ("grpo.max_steps=0", r"grpo\.max_steps: must be >= 1, got 0"),
    ("grpo.num_generations=1", r"grpo\.num_generations: must be >= 2, got 1 \(GRPO compares a group\)"),
    ("recursion.discount=1", r"recursion\.discount: must be < 1"),
    ("workflow.max_steps=0", r"workflow\.max_steps: must be >= 1"),
    ("policy.dtype=float8", r"policy\.dtype: 'float8' is not one of float32, bfloat16, float16"),
])
def test_conductor_refuses_bad_values_at_load(tmp_path, override, message):
    with pytest.raises(ConfigError, match=rf"^config: {message}"):
        load_conductor(None, [override])
    # the same value in a YAML file: the error names the file too
    key, value = override.split("=", 1)
    section, name = key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({section: {name: yaml.safe_load(value)}}))
    with pytest.raises(ConfigError, match=rf"c\.yaml: {message}"):
        load_conductor(path)


@pytest.mark.parametrize("override,message", [
    ("data.validation_fraction=1.5", r"data\.validation_fraction: must be < 1, got 1\.5"),
    ("data.validation_fraction=-0.1", r"data\.validation_fraction: must be >= 0"),
    ("data.limit=0", r"data\.limit: must be >= 1, got 0 \(null for all\)"),
    ("train.seed=-2", r"train\.seed: must be >= 0"),
    ("train.popsize=1", r"train\.popsize: must be >= 2, got 1 \(or null for the default\)"),
    ("train.sigma0=0", r"train\.sigma0: must be > 0"),
    ("train.iterations=0", r"train\.iterations: must be >= 1"),
    ("head.sparsity=1.0", r"head\.sparsity: must be < 1"),
    ("protocol.roles=[worker, judge]", r"protocol\.roles: 'judge' is not one of thinker, worker, verifier"),
    ("train.optimizer=adam", r"train\.optimizer: 'adam' is not one of sep-cma-es"),
])
def test_trinity_refuses_bad_values_at_load(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_trinity(None, [override])
    key, value = override.split("=", 1)
    section, name = key.split(".")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({section: {name: yaml.safe_load(value)}}))
    with pytest.raises(ConfigError, match=rf"t\.yaml: {message}"):
        load_trinity(path)


def test_good_boundary_values_still_load():
    c = load_conductor(None, ["warmstart.steps=0", "data.seed=0", "data.eval_limit=0", "grpo.max_steps=1"])
    assert c.warmstart.steps == 0 and c.grpo["max_steps"] == 1
    t = load_trinity(None, ["data.limit=1", "data.validation_fraction=0.0", "train.popsize=null", "data.limit=null"])
    assert t.data.limit is None and t.train.popsize is None


@dataclass
class Inner:
    n: int | None = checked(None, ge=1, why="null for all")
    names: list[str] = checked(default_factory=list, one_of=("a", "b"))


@dataclass
class Outer:
    inner: Inner = checked(default_factory=Inner)
    rate: float = checked(0.5, gt=0, le=1)


def test_checked_rules_apply_to_any_typed_config():
    assert build(Outer, {"inner": {"n": 3, "names": ["a"]}, "rate": 1}).rate == 1.0
    with pytest.raises(ConfigError, match=r"^inner\.n: must be >= 1, got 0 \(null for all\)$"):
        build(Outer, {"inner": {"n": 0}})
    with pytest.raises(ConfigError, match=r"^inner\.names: 'c' is not one of a, b$"):
        build(Outer, {"inner": {"names": ["a", "c"]}})
    with pytest.raises(ConfigError, match=r"^rate: must be <= 1, got 1\.5$"):
        build(Outer, {"rate": 1.5})


def test_a_policy_model_that_does_not_exist_is_refused_before_any_work(tmp_path, monkeypatch):
    import conductor.train as ct

    def no_env(*a, **k):
        raise AssertionError("the pool and data were loaded before the model was checked")

    monkeypatch.setattr(ct.ConductorEnv, "from_config", no_env)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec, message in (("/nonexistent/model", r"policy\.model: cannot load '/nonexistent/model'"),
                          ("no-such-org/no-such-model", r"policy\.model: cannot load 'no-such-org/no-such-model'"),
                          (str(tmp_path / "missing.gguf"), r"policy\.model: model: GGUF file .*missing\.gguf does not exist"),
                          (str(tmp_path), r"policy\.model: model: .* is not an HF model folder")):
        cfg = load_conductor(None, [f"policy.model={spec}"])
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match=message):
            ct.train(cfg, tmp_path / "out", progress=False)
        assert time.perf_counter() - t0 < 10


# -- a damaged trainer_state.pkl on resume ---------------------------------------------------------

class Quadratic:
    n_params = 6

    def x0(self):
        return np.zeros(self.n_params)

    def evaluate(self, X, generation, indices):
        return [FitnessResult(fitness=-float((x ** 2).sum()), accuracy=0.0, cost=0.0) for x in X]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not a state"])
def test_a_damaged_trainer_state_is_a_clear_error_naming_the_file(tmp_path, damage):
    cfg = TrainConfig(iterations=4, sigma0=0.3, wandb=False, seed=1)
    optimize(Quadratic(), cfg, out_dir=tmp_path, stop_after=2)
    state = tmp_path / STATE_FILE
    raw = state.read_bytes()
    import pickle
    state.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"\x00not a pickle at all",
                       "empty": b"", "not a state": pickle.dumps([1, 2, 3])}[damage])
    with pytest.raises(CheckpointError, match=rf"{STATE_FILE}: cannot resume.*(truncated or corrupt|not a TRINITY)"):
        optimize(Quadratic(), cfg, out_dir=tmp_path, resume=True)
    assert issubclass(CheckpointError, BatonError)  # the CLI prints it without a traceback


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "conductor").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_conductor_configs_pass_the_rules(path):
    load_conductor(path)
