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
from routers.typedconfig import apply_dotted, build
from routers.yamlfile import read_config_tree


@dataclass
class PolicyConfig:
    model: str = "tiny"              # "tiny", "smollm2", a .gguf, an HF folder or a hub id
    dtype: str = "float32"
    max_completion_length: int = 64  # tokens the Conductor may write per workflow
    temperature: float = 1.0         # sampling temperature for GRPO rollouts (serving is greedy)


@dataclass
class PoolConfig:
    source: str = "toy"              # "toy" (conductor.toy) or a pool YAML for routers.pool.config
    subset: list[int] | None = None  # [min, max] workers shown per prompt (adaptive pools); None = all
    worker_max_tokens: int = 4096
    worker_temperature: float = 0.2
    descriptions: dict[str, str] = field(default_factory=dict)  # worker -> one line for the prompt


@dataclass
class DataConfig:
    task: str = "toy"                # a routers.tasks name (e.g. "mmlu", "gsm8k") or "toy"
    train_limit: int = 48
    eval_limit: int = 30
    seed: int = 0


@dataclass
class PromptConfig:
    few_shot: bool = True
    prefill: str = ""                # text the prompt ends with and the completion continues
    template: str | None = None      # None: conductor.prompts.DEFAULT_TEMPLATE


@dataclass
class WorkflowConfig:
    max_steps: int = 5
    use_subtasks: bool = True        # ablation: False sends workers only the question and inputs
    force_worker: str | None = None  # ablation: every step goes to this worker
    fallback_worker: str | None = None  # serving: where an unparsable workflow goes (default: 1st)


@dataclass
class RewardConfig:
    unparsable: float = 0.0
    wrong: float = 0.5
    correct: float = 1.0
    cost_weight: float = 0.0         # reward -= cost_weight * dollars spent by the workers


@dataclass
class RecursionConfig:
    enabled: bool = False
    max_depth: int = 1               # nested workflows allowed below the top one
    discount: float = 0.25           # reward *= (1 - discount) ** (levels of recursion used)
    name: str = "conductor"          # the Conductor's own name in the pool


@dataclass
class WarmStartConfig:
    steps: int = 0                   # format-only supervised steps before GRPO (conductor.warmstart)
    learning_rate: float = 1e-3
    batch_size: int = 8


@dataclass
class TrainConfig:
    steps: int = 20
    prompts_per_step: int = 2        # distinct questions per optimizer step
    num_generations: int = 4         # GRPO group size
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 0
    beta: float = 0.0
    save_steps: int = 10
    logging_steps: int = 1
    seed: int = 0
    wandb: bool = True               # offline unless WANDB_MODE says otherwise
    use_cpu: bool | None = None      # None: CPU when no CUDA device is present
    bf16: bool = False
    gradient_checkpointing: bool = False  # trades compute for memory; for large policies on GPU
    cpu_threads: int | None = None   # torch threads; 1 is fastest on a crowded CPU


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
    r = cfg.reward
    if not (r.unparsable <= r.wrong <= r.correct):
        raise ConfigError(f"{label}: reward values must satisfy unparsable <= wrong <= correct")
    if cfg.workflow.max_steps < 1:
        raise ConfigError(f"{label}: workflow.max_steps must be >= 1")
    if cfg.train.num_generations < 2:
        raise ConfigError(f"{label}: train.num_generations must be >= 2 (GRPO compares a group)")
    if cfg.pool.subset is not None and (len(cfg.pool.subset) != 2 or not 1 <= cfg.pool.subset[0] <= cfg.pool.subset[1]):
        raise ConfigError(f"{label}: pool.subset must be [min, max] with 1 <= min <= max")
    if not 0.0 <= cfg.recursion.discount < 1.0:
        raise ConfigError(f"{label}: recursion.discount must be in [0, 1)")
