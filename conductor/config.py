"""Conductor training config: nested dataclasses, read from YAML, with dotted `key=value` overrides.

Unknown keys and badly typed values raise `ConfigError` naming the file and the dotted key, so a
typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from routers.errors import ConfigError
from routers.typedconfig import apply_dotted, build, checked
from routers.yamlfile import read_config_tree


@dataclass
class PolicyConfig:
    model: str = checked("tiny", nonempty=True)  # "tiny", "smollm2", a .gguf, an HF folder or a hub id
    dtype: str = checked("float32", one_of=("float32", "bfloat16", "float16"))
    max_completion_length: int = checked(64, ge=1)  # tokens the Conductor may write per workflow
    temperature: float = checked(1.0, gt=0)  # sampling temperature for GRPO rollouts (serving is greedy)


@dataclass
class PoolConfig:
    source: str = checked("toy", nonempty=True)  # "toy" (conductor.toy) or a pool YAML for routers.pool.config
    subset: list[int] | None = None  # [min, max] workers shown per prompt (adaptive pools); None = all
    worker_max_tokens: int = checked(4096, ge=1)
    worker_temperature: float = checked(0.2, ge=0)
    descriptions: dict[str, str] = field(default_factory=dict)  # worker -> one line for the prompt


@dataclass
class DataConfig:
    task: str = checked("toy", nonempty=True)  # a routers.tasks name (e.g. "mmlu", "gsm8k") or "toy"
    train_limit: int = checked(48, ge=1)
    eval_limit: int = checked(30, ge=0)
    seed: int = checked(0, ge=0)


@dataclass
class PromptConfig:
    few_shot: bool = True
    prefill: str = ""                # text the prompt ends with and the completion continues
    template: str | None = None      # None: conductor.prompts.DEFAULT_TEMPLATE


@dataclass
class WorkflowConfig:
    max_steps: int = checked(5, ge=1)
    use_subtasks: bool = True        # ablation: False sends workers only the question and inputs
    force_worker: str | None = None  # ablation: every step goes to this worker
    fallback_worker: str | None = None  # serving: where an unparsable workflow goes (default: 1st)


@dataclass
class RewardConfig:
    unparsable: float = 0.0
    wrong: float = 0.5
    correct: float = 1.0
    cost_weight: float = checked(0.0, ge=0)  # reward -= cost_weight * dollars spent by the workers


@dataclass
class RecursionConfig:
    enabled: bool = False
    max_depth: int = checked(1, ge=0)  # nested workflows allowed below the top one
    discount: float = checked(0.25, ge=0, lt=1)  # reward *= (1 - discount) ** (levels of recursion used)
    name: str = "conductor"          # the Conductor's own name in the pool


@dataclass
class WarmStartConfig:
    steps: int = checked(0, ge=0)    # format-only supervised steps before GRPO (conductor.warmstart)
    learning_rate: float = checked(1e-3, gt=0)
    batch_size: int = checked(8, ge=1)


@dataclass
class TrainConfig:
    steps: int = checked(20, ge=1)
    prompts_per_step: int = checked(2, ge=1)  # distinct questions per optimizer step
    num_generations: int = checked(4, ge=2, why="GRPO compares a group")  # GRPO group size
    learning_rate: float = checked(1e-6, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = checked(0, ge=0)
    beta: float = checked(0.0, ge=0)
    save_steps: int = checked(10, ge=1)
    logging_steps: int = checked(1, ge=1)
    seed: int = checked(0, ge=0)
    wandb: bool = False              # on: log to wandb (offline unless WANDB_MODE says otherwise)
    use_cpu: bool | None = None      # None: CPU when no CUDA device is present
    bf16: bool = False
    gradient_checkpointing: bool = False  # trades compute for memory; for large policies on GPU
    cpu_threads: int | None = checked(None, ge=1)  # torch threads; 1 is fastest on a crowded CPU


@dataclass
class ConductorConfig:
    name: str = "conductor"
    out: str = "outputs/conductor"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    recursion: RecursionConfig = field(default_factory=RecursionConfig)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ConductorConfig:
    """Read a YAML config (None: defaults) and apply `key=value` overrides (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    label = "config"
    if path is not None:
        label = str(path)
        tree = read_config_tree(Path(path))
    apply_dotted(tree, overrides or [])
    try:
        cfg = build(ConductorConfig, tree)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    validate(cfg, label)
    return cfg


def validate(cfg: ConductorConfig, label: str = "config") -> None:
    """Rules across fields (one field's range is its `checked` rule, applied by `build`)."""
    r = cfg.reward
    if not (r.unparsable <= r.wrong <= r.correct):
        raise ConfigError(f"{label}: reward values must satisfy unparsable <= wrong <= correct")
    if cfg.pool.subset is not None and (len(cfg.pool.subset) != 2 or not 1 <= cfg.pool.subset[0] <= cfg.pool.subset[1]):
        raise ConfigError(f"{label}: pool.subset must be [min, max] with 1 <= min <= max")
