"""The Conductor's `grpo:` section is trl.GRPOConfig: any field settable from YAML or a dotted
override, checked by TRL itself, errors naming the `grpo.` key; old hand-mapped keys point to theirs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conductor.config import GRPO_DEFAULTS, ConductorConfig, load_config
from routers.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "conductor"


def test_any_trl_field_from_overrides_reaches_the_trainer_config(tmp_path):
    from conductor.train import grpo_config
    cfg = load_config(None, ["grpo.loss_type=dr_grpo", "grpo.num_generations=16", "grpo.epsilon_high=0.28",
                             "grpo.scale_rewards=none", "grpo.mask_truncated_completions=true",
                             "grpo.learning_rate=1e-6", "train.prompts_per_step=3"])
    g = grpo_config(cfg, tmp_path)
    assert (g.loss_type, g.num_generations, g.epsilon_high, g.scale_rewards) == ("dr_grpo", 16, 0.28, "none")
    assert g.mask_truncated_completions is True and g.learning_rate == 1e-6
    # derived from our own keys; our documented defaults where nobody set a value
    assert g.per_device_train_batch_size == 3 * 16 and g.output_dir == str(tmp_path / "trainer")
    assert g.max_steps == GRPO_DEFAULTS["max_steps"] and g.seed == 0 and g.remove_unused_columns is False
    assert g.report_to == [] or g.report_to == "none" or g.report_to == ["none"]


def test_yaml_grpo_section_and_override_precedence(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("grpo:\n  loss_type: bnpo\n  max_steps: 7\n  top_p: 0.9\n")
    cfg = load_config(p, ["grpo.max_steps=9"])
    assert cfg.grpo["loss_type"] == "bnpo" and cfg.grpo["max_steps"] == 9 and cfg.grpo["top_p"] == 0.9
    # the default config and a rebuild from its dict (the Python API's path) agree
    assert ConductorConfig().grpo == load_config(None).grpo
    # transformers' deprecated alias is honoured (stored under the new name, so a rebuild keeps it)
    on = load_config(None, ["grpo.gradient_checkpointing=true"])
    assert on.grpo["activation_checkpointing"] is True and "gradient_checkpointing" not in on.grpo
    assert ConductorConfig(grpo=on.grpo).grpo["activation_checkpointing"] is True


@pytest.mark.parametrize("override,message", [
    ("grpo.loss_typ=dr_grpo", r"grpo\.loss_typ: not a trl\.GRPOConfig field \(did you mean grpo\.loss_type\?\)"),
    ("grpo.loss_type=ppo", r"grpo\.loss_type: 'ppo' is not one of grpo, dr_grpo, dapo"),
    ("grpo.num_generations=many", r"grpo\.num_generations: expected an integer, got 'many'"),
    ("grpo.lr_scheduler_type=fast", r"grpo\.lr_scheduler_type: 'fast' is not one of linear, cosine"),
    ("grpo.use_vllm=maybe", r"grpo\.use_vllm: expected true/false"),
    ("grpo.learning_rate=-1", r"grpo\.learning_rate: must be > 0"),
    # TRL's own __post_init__ refuses it; the message is TRL's, the key is ours
    ("grpo.generation_batch_size=10", r"grpo\.generation_batch_size: .*divisible.*\(trl\.GRPOConfig\)"),
    ("grpo.output_dir=/tmp/x", r"grpo\.output_dir: set from the run's --out"),
    ("grpo.per_device_train_batch_size=8", r"grpo\.per_device_train_batch_size: set from train\.prompts_per_step"),
    # the old hand-mapped keys say where they went
    ("train.learning_rate=1e-3", r"train\.learning_rate is now grpo\.learning_rate"),
    ("train.steps=3", r"train\.steps is now grpo\.max_steps"),
    ("policy.max_completion_length=8", r"policy\.max_completion_length is now grpo\.max_completion_length"),
])
def test_bad_grpo_values_are_config_errors_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=rf"^config: {message}"):
        load_config(None, [override])
    key, value = override.split("=", 1)
    section, name = key.split(".")
    p = tmp_path / "c.yaml"
    p.write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError, match=rf"c\.yaml: {message}"):
        load_config(p)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_use_vllm_without_vllm_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"grpo\.use_vllm: vLLM is not installed"):
        load_config(None, ["grpo.use_vllm=true"])
    assert load_config(None, ["grpo.use_vllm=false"]).grpo["use_vllm"] is False


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed here")
def test_use_vllm_where_vllm_is_installed(tmp_path):
    from conductor.train import grpo_config
    cfg = load_config(None, ["grpo.use_vllm=true", "grpo.vllm_mode=colocate"])
    assert grpo_config(cfg, tmp_path).use_vllm is True


def test_shipped_configs_use_the_grpo_section():
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.grpo["max_steps"] >= 1 and cfg.grpo["num_generations"] >= 2, path.name
    paper = load_config(CONFIGS / "paper.yaml")
    assert (paper.grpo["num_generations"], paper.train.prompts_per_step, paper.grpo["max_completion_length"]) == (64, 4, 1024)
    assert paper.grpo["bf16"] is True and paper.grpo["use_cpu"] is False  # checked without a GPU, used on one
