"""Conductor training config: nested dataclasses, read from YAML, with dotted `key=value` overrides.

Unknown keys and badly typed values raise `ConfigError` naming the file and the dotted key, so a
typo in a config never silently falls back to a default.

The `grpo:` section is trl's own `GRPOConfig`: any of its fields can be set (`grpo.loss_type=dr_grpo`,
`grpo.num_generations=16`, `grpo.use_vllm=true`, ...), and the section is checked by building a
`GRPOConfig` from it, so TRL decides what is valid. `GRPO_DEFAULTS` lists where our defaults differ
from TRL's and why. Our own sections hold only what TRL has no field for: the pool, the workflow
limits, the reward values, recursion, the warm start, the prompt and `train` (prompts per step,
wandb switch, CPU threads).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib.util
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from routers.errors import ConfigError
from routers.typedconfig import Check, apply_dotted, build, checked, coerce
from routers.yamlfile import read_config_tree


@dataclass
class PolicyConfig:
    model: str = checked("tiny", nonempty=True)  # "tiny", "smollm2", a .gguf, an HF folder or a hub id
    dtype: str = checked("float32", one_of=("float32", "bfloat16", "float16"))
    # tokens per workflow and rollout temperature are grpo.max_completion_length / grpo.temperature


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
    """What TRL has no field for; everything else about the optimizer and rollouts is `grpo`."""
    prompts_per_step: int = checked(2, ge=1)  # distinct questions per optimizer step (per device)
    wandb: bool = False              # on: log to wandb (offline unless WANDB_MODE says otherwise)
    cpu_threads: int | None = checked(None, ge=1)  # torch threads; 1 is fastest on a crowded CPU


# Where our defaults differ from trl.GRPOConfig's (every other field keeps TRL's default).
GRPO_DEFAULTS: dict[str, Any] = {
    "max_steps": 20,                 # TRL: -1 (train by epochs)
    "num_generations": 4,            # TRL: 8
    "max_completion_length": 64,     # TRL: 512; a workflow is three short lists (also the serving limit)
    "lr_scheduler_type": "cosine",   # the paper's schedule; TRL: linear
    "save_steps": 10,                # TRL: 500
    "logging_steps": 1,              # TRL: 10; the reward curve has a point per step
    "seed": 0,                       # TRL: 42; also seeds the worker subsets and the warm start
    "bf16": False,                   # TRL: on unless fp16, which a CPU cannot run; GPU configs set it
    "activation_checkpointing": False,  # TRL: on; costs compute, needed only for large policies
}
# GRPOConfig fields our config sets from its own keys (setting them in `grpo` would be a second way).
GRPO_DERIVED = {
    "output_dir": "the run's --out (or `out`), as <out>/trainer",
    "per_device_train_batch_size": "train.prompts_per_step x grpo.num_generations",
    "report_to": "train.wandb",
    "remove_unused_columns": "always false: the reward reads the item_id and workers columns",
}
# Ranges TRL does not check itself (it would fail later, or silently train nothing).
GRPO_CHECKS = {
    "max_steps": Check(ge=1), "learning_rate": Check(gt=0), "temperature": Check(gt=0),
    "max_completion_length": Check(ge=1), "num_generations": Check(ge=2, why="GRPO compares a group"),
    "seed": Check(ge=0), "save_steps": Check(gt=0), "logging_steps": Check(gt=0), "warmup_steps": Check(ge=0),
    "beta": Check(ge=0),
}
# Old keys of this config, now GRPOConfig fields.
MOVED = {"train.steps": "grpo.max_steps", "train.num_generations": "grpo.num_generations",
         "train.learning_rate": "grpo.learning_rate", "train.lr_scheduler_type": "grpo.lr_scheduler_type",
         "train.warmup_steps": "grpo.warmup_steps", "train.beta": "grpo.beta", "train.save_steps": "grpo.save_steps",
         "train.logging_steps": "grpo.logging_steps", "train.seed": "grpo.seed", "train.use_cpu": "grpo.use_cpu",
         "train.bf16": "grpo.bf16", "train.gradient_checkpointing": "grpo.activation_checkpointing",
         "policy.max_completion_length": "grpo.max_completion_length", "policy.temperature": "grpo.temperature"}


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
    grpo: dict[str, Any] = field(default_factory=dict)  # trl.GRPOConfig fields; GRPO_DEFAULTS fill the rest

    def __post_init__(self):
        g = dict(self.grpo or {})
        if "gradient_checkpointing" in g:  # transformers' deprecated alias: stored under the new name
            g.setdefault("activation_checkpointing", g.pop("gradient_checkpointing"))
        self.grpo = check_grpo({**GRPO_DEFAULTS, **g}, self.train.prompts_per_step)

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
    for old, new in MOVED.items():
        section, key = old.split(".")
        if isinstance(tree.get(section), dict) and key in tree[section]:
            raise ConfigError(f"{label}: {old} is now {new} (a trl.GRPOConfig field)")
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


def _grpo_value(value: Any, tp: Any, key: str) -> Any:
    """`value` checked against a GRPOConfig field's annotation: scalars, lists and dicts as
    `typedconfig.coerce` reads them, an Enum field by its members' values, a Literal by its values;
    types we cannot check here (e.g. ParallelismConfig) are left to GRPOConfig itself."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        errors = []
        for a in typing.get_args(tp):
            if a is type(None):
                continue
            if isinstance(value, str) and isinstance(a, type) and issubclass(a, enum.Enum):
                return _grpo_value(value, a, key)  # `SchedulerType | str`: the str is one of its values
            try:
                return _grpo_value(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        if value in allowed or isinstance(value, tp):
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return value  # as TRL would hold it (save_steps: 10 stays a step count, not 10.0)
    if tp in (bool, int, float, str, Any) or origin in (list, dict) or tp in (list, dict):
        return coerce(value, tp, key)
    return value


def _supported_values(help_text: str) -> list[str]:
    """The values TRL's help lists as "Supported values are 'a', 'b', and 'c'." (loss_type), or []."""
    m = re.search(r"Supported values are ([^.]*)\.", help_text or "")
    return re.findall(r"'([\w-]+)'", m.group(1)) if m else []


def check_grpo(values: dict[str, Any], prompts_per_step: int = 1) -> dict[str, Any]:
    """`values` (trl.GRPOConfig fields) type-checked and validated by building a GRPOConfig, or a
    ConfigError naming the `grpo.` key. Hardware is not checked here (the config may be written on a
    laptop for a GPU box): the check build runs with use_cpu and without bf16/fp16; `use_vllm` is
    refused where vLLM is not installed, since the run could not start."""
    from trl import GRPOConfig

    fields = {f.name: f for f in dataclasses.fields(GRPOConfig) if f.init}
    hints = typing.get_type_hints(GRPOConfig)
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"grpo.{k}"
        if k in GRPO_DERIVED:
            raise ConfigError(f"{key}: set from {GRPO_DERIVED[k]}, not in grpo")
        if k not in fields:
            near = difflib.get_close_matches(k, fields, n=1)
            hint = f" (did you mean grpo.{near[0]}?)" if near else ""
            raise ConfigError(f"{key}: not a trl.GRPOConfig field{hint}")
        v = _grpo_value(v, hints[k], key)
        rule = GRPO_CHECKS.get(k)
        problem = rule.error(v) if rule and not isinstance(v, bool) else None
        if problem:
            raise ConfigError(f"{key}: {problem}{f' ({rule.why})' if rule.why else ''}")
        allowed = _supported_values(fields[k].metadata.get("help", "")) if isinstance(v, str) else []
        if allowed and v not in allowed:
            raise ConfigError(f"{key}: {v!r} is not one of {', '.join(allowed)} (trl.GRPOConfig)")
        out[k] = v
    if out.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise ConfigError("grpo.use_vllm: vLLM is not installed here (pip install vllm, on a CUDA machine); "
                          "set grpo.use_vllm=false to generate with transformers")
    trial = {**out, "use_cpu": True, "bf16": False, "fp16": False, "output_dir": "unused",
             "per_device_train_batch_size": prompts_per_step * out.get("num_generations", 8), "report_to": "none"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GRPOConfig(**trial)
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        named = [k for k in out if k in msg]
        where = f"grpo.{max(named, key=len)}" if named else "grpo"
        raise ConfigError(f"{where}: {msg} (trl.GRPOConfig)") from None
    return out
