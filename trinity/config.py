"""TRINITY run configuration: nested dataclasses, read from YAML, overridable by `a.b=c` strings.

One `TrinityConfig` describes a run end to end (coordinator, SVF, head, protocol, fitness, training,
data), is written into checkpoints (config.json) and is what `baton train trinity` and the scripts
take. Unknown keys and wrongly typed values are refused with a `ConfigError` naming the key, so a
typo in a YAML file or an override never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from routers.errors import ConfigError
from routers.typedconfig import apply_dotted, build, checked
from routers.yamlfile import read_config_tree

ROLES = ("thinker", "worker", "verifier")
OPTIMIZERS = ("sep-cma-es", "random-search", "reinforce", "sft", "two-stage")


@dataclass
class CoordinatorConfig:
    """The LM that reads the transcript; its hidden state is the router's feature."""
    model: str = checked("smollm2", nonempty=True)  # "smollm2", "tiny", an HF id (e.g. Qwen/Qwen3-0.6B) or a local path
    layer: int = -1                  # hidden-state index (-1 = last layer)
    position: int = -2               # token position of the feature (-2 = penultimate, as in the paper)
    pooling: str = checked("token", one_of=("token", "mean"))  # the state at `position`, or the mean over the tokens
    max_tokens: int = checked(128, ge=1)  # transcript tokens kept per forward pass
    batch_size: int = checked(16, ge=1)
    dtype: str = "float32"
    device: str = "cpu"
    random_init: bool = False        # build from config with random weights (GPU timing checks)


@dataclass
class SVFConfig:
    """Singular-value offsets trained beside the head (paper: 7 projections of one layer + embeddings)."""
    enabled: bool = False
    layer: int = -2                  # which transformer block (negative = from the top)
    modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"])
    embeddings: bool = True          # also embed_tokens / lm_head where untied


@dataclass
class HeadConfig:
    """Paper's Table 3 variants: linear, low-rank (rank), sparse, block-diagonal (blocks)."""
    kind: str = checked("linear", one_of=("linear", "lowrank", "sparse", "blockdiag", "selection"))
    roles: bool = False              # True: roles head (episodes); False: selection head (route, the default task)
    rank: int = checked(14, ge=1)
    blocks: int = checked(2, ge=1)
    sparsity: float = checked(0.9, ge=0, lt=1)


@dataclass
class ProtocolConfig:
    max_turns: int = checked(5, ge=1)
    roles: list[str] = checked(default_factory=lambda: list(ROLES), one_of=ROLES)
    thinker_prompt: str = ("You are the Thinker. Analyse the task and the work so far, point out what is "
                           "missing or wrong, and propose the next step. Do not give the final answer. "
                           "You may end with <suggested_role>worker</suggested_role> or "
                           "<suggested_role>verifier</suggested_role>.")
    worker_prompt: str = "You are the Worker. Solve the task, using the discussion so far. Give the final answer."
    verifier_prompt: str = ("You are the Verifier. Check the latest answer step by step. End with "
                            "'VERDICT: ACCEPT' if it is correct, otherwise 'VERDICT: REJECT'.")
    # every episode ends with a Worker answer: an ACCEPT before any Worker spoke does not end it, and
    # if no Worker has answered by the last turn, that turn is a Worker turn (the head picks the
    # agent). Off reproduces the paper (such an episode answers ""); `baton serve` always turns it on.
    require_answer: bool = False
    transcript_max_chars: int = checked(2000, ge=1)  # each turn's text is cut to this in the coordinator transcript
    max_tokens: int = checked(4096, ge=1)  # worker generation cap
    temperature: float = checked(0.1, ge=0)


@dataclass
class FitnessConfig:
    """fitness = mean correctness + diversity_bonus * diversity + turn_bonus * turn_efficiency
    - cost_weight * mean dollars per query. cost_weight 0 reproduces the paper's objective."""
    diversity_bonus: float = 0.0
    turn_bonus: float = 0.0
    cost_weight: float = checked(0.0, ge=0)
    # route task: a family of heads along the cost-quality frontier (trinity.frontier), one per
    # relative weight r >= 0, each trained on accuracy - r * dollars / (dearest worker's mean dollars)
    frontier: list[float] | None = None


@dataclass
class TrainConfig:
    optimizer: str = checked("sep-cma-es", one_of=OPTIMIZERS)
    mode: str = checked("head", one_of=("head", "svf"))  # head: features cached once; svf: recomputed per candidate
    popsize: int | None = checked(None, ge=2, why="or null for the default")  # None: pycma's 4 + 3 ln n
    sigma0: float = checked(0.03, gt=0)
    iterations: int = checked(60, ge=1)
    repeats: int = checked(16, ge=1)  # sampled episodes per candidate and query, averaged
    sampling: str = checked("sample", one_of=("sample", "expected"))  # sample (paper) | expected (exact mean)
    batch_size: int | None = checked(None, ge=1)  # queries per generation (None: all)
    seed: int = checked(0, ge=0)
    init_from: str | None = None      # a TRINITY checkpoint whose head (and SVF offsets) start the search
    # which point of a run is returned, the same rule for every optimizer (trinity.optimizers.Selector):
    # the best on held-out training queries over every step, or the last step
    select: str = checked("best-validation", one_of=("best-validation", "last"))
    wandb: bool = False              # on: log to wandb (offline unless WANDB_MODE says otherwise)
    wandb_project: str = "baton-trinity"
    # episode training through a pool (trinity.spend): stop between generations before live worker
    # calls would pass this many dollars (null: no budget), and the dollars charged per live call of
    # a worker the pool file gives no price (null: such a pool's spend is unknown, and refuses a budget)
    max_spend_usd: float | None = checked(None, gt=0, why="or null for no budget")
    unpriced_cost_usd: float | None = checked(None, ge=0, why="or null")
    # gradient baselines / stage 1 of two-stage
    lr: float = checked(0.01, gt=0)
    epochs: int = checked(50, ge=1)
    tau: float = checked(0.1, gt=0)   # soft-target temperature softmax(score / tau)


@dataclass
class DataConfig:
    train: str = "embedded"           # dataset spec (routers.data.load_dataset) or "embedded"
    test: str | None = None           # None: the test split of `train`
    prices: str | None = None         # route: price table (as `baton eval --prices`) for costs when the data has none
    pool: str | None = None           # pool YAML (episode task)
    task: str = checked("route", one_of=("route", "episode"))  # route: single-turn selection on a
                                      # recorded dataset; episode: multi-turn (train = task items, e.g. "mmlu:200")
    limit: int | None = checked(None, ge=1, why="null for all")  # at most this many training queries
    validation_fraction: float = checked(0.0, ge=0, lt=1)  # of the training queries, held out
    encoder: str | None = None        # route only: routers.embed encoder (e.g. minilm) instead of the coordinator,
                                      # or '+'-joined parts side by side (coordinator+minilm); no checkpoint then


@dataclass
class TrinityConfig:
    name: str = "trinity"
    coordinator: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    svf: SVFConfig = field(default_factory=SVFConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out: str = "outputs/trinity"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrinityConfig":
        """Rules across fields (one field's range or choices is its `checked` rule, applied by `build`)."""
        if "worker" not in self.protocol.roles:
            raise ConfigError("protocol.roles: must include 'worker' (the answer is the last Worker output)")
        if self.train.mode == "svf" and not self.svf.enabled:
            raise ConfigError("train.mode: 'svf' needs svf.enabled: true")
        return self


def from_dict(data: dict) -> TrinityConfig:
    return build(TrinityConfig, dict(data or {})).validate()


def apply_overrides(cfg: TrinityConfig, overrides: list[str]) -> TrinityConfig:
    """Apply `a.b=c` strings; `c` is parsed as YAML (so 3, 0.5, true, null, [a, b] work) then
    type-checked against the field."""
    return from_dict(apply_dotted(cfg.to_dict(), overrides, known_only=True))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrinityConfig:
    """Read a YAML config (None: all defaults) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        data = read_config_tree(p)
        try:
            cfg = from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    else:
        cfg = TrinityConfig()
    return apply_overrides(cfg, overrides or []) if overrides else cfg


def default_popsize(n_params: int) -> int:
    """pycma's default population, 4 + floor(3 ln n) (33 at the paper's 19,456 parameters)."""
    import math
    return 4 + int(3 * math.log(n_params))
