"""The data-and-features stage of TRINITY training: what a run trains and is tested on, and the
coordinator's view of it, computed once before the objective is built.

- route task: `load_routing_data` (recorded routing datasets, split, cleaned, limited), then
  `route_data` (test columns aligned to the head's worker order, the held-out rows selection and
  reporting use, the cached features, decision costs and tokens) -> `RouteData`.
- episode task: `episode_items` (train and test items): `load_items` (task items by spec) or
  `embedded_episode_split` (the packaged items).
The coordinator reads `user: <prompt>` for single-turn routing (`route_texts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routers.accounting import decision_costs
from routers.errors import ConfigError, DataError
from trinity.config import TrinityConfig


# -- route task ----------------------------------------------------------------------------------
def split_routing_dataset(cfg: TrinityConfig, ds, name: str | None = None):
    """(train, test) of one RoutingDataset (loaded, or given in memory to `baton.train_trinity`):
    its train split (or all of it) without queries that miss a score, cut to `data.limit`
    (seeded), and its test split (or None)."""
    train = ds.split("train") if "train" in ds.splits else ds
    test = ds.split("test") if "test" in ds.splits else None
    missing = np.isnan(train.scores).any(axis=1)
    if missing.all():
        raise DataError("every training query has a missing score", file=name or ds.name)
    if missing.any():
        print(f"trinity: dropping {int(missing.sum())} training queries with missing scores")
        train = train.subset(~missing)
    if cfg.data.limit is not None and cfg.data.limit < len(train):
        idx = np.sort(np.random.default_rng(cfg.train.seed).choice(len(train), cfg.data.limit, replace=False))
        train = train.subset(idx)
    return train, test


def load_routing_data(cfg: TrinityConfig):
    """(train, test) RoutingDatasets: `data.train` (embedded or any spec) and its test split, or
    the test split of `data.test`."""
    if cfg.data.train == "embedded":
        if cfg.data.prices is not None:
            raise ConfigError("data.prices: the embedded dataset carries its recorded costs; drop data.prices")
        from routers.record import embedded_dataset
        ds = embedded_dataset(cfg.train.seed)
    else:
        from routers.data import load_dataset
        ds = load_dataset(cfg.data.train, prices=cfg.data.prices)
    train, test = split_routing_dataset(cfg, ds, name=cfg.data.train)
    if cfg.data.test is not None:
        from routers.data import load_dataset
        t = load_dataset(cfg.data.test, prices=cfg.data.prices)
        test = t.split("test") if "test" in t.splits else t
    return train, test


def route_texts(prompts: list[str]) -> list[str]:
    """What the coordinator reads for single-turn routing: the one-line transcript `user: <prompt>`."""
    from trinity.coordinator import render_transcript
    return [render_transcript([("user", p)]) for p in prompts]


COORDINATOR = "coordinator"   # the part of a `data.encoder` concatenation that names the run's coordinator


def encoder_parts(encoder: str | None) -> list[str]:
    """The parts of `data.encoder`: None -> ["coordinator"]; "minilm" -> ["minilm"];
    "coordinator+minilm" -> both, concatenated in that order. Empty or repeated parts are refused."""
    if encoder is None:
        return [COORDINATOR]
    parts = [p.strip() for p in str(encoder).split("+")]
    if not all(parts) or len(set(parts)) != len(parts):
        raise ConfigError(f"data.encoder {encoder!r}: feature sources joined by '+' must be non-empty and distinct "
                          f"(e.g. coordinator+minilm)")
    return parts


def feature_source(encoder: str | None, coordinator=None):
    """What `route_features` reads for `data.encoder`: the coordinator, an encoder name, or a tuple
    of them (a concatenation). `coordinator` is required when a part is "coordinator"."""
    parts = encoder_parts(encoder)
    if COORDINATOR in parts and coordinator is None:
        raise ConfigError(f"data.encoder {encoder!r}: the 'coordinator' part needs the run's coordinator")
    srcs = tuple(coordinator if p == COORDINATOR else p for p in parts)
    return srcs[0] if len(srcs) == 1 else srcs


def _part_name(source) -> str:
    return source if isinstance(source, str) else f"coordinator {getattr(source, 'name', type(source).__name__)}"


def route_features(source, prompts: list[str]) -> np.ndarray:
    """Features of `prompts` from a Coordinator, a `routers.embed` encoder name (the MiniLM
    comparison), or a tuple of those side by side (`feature_source`). Each part is computed by its
    own source, so from its own cache; in a concatenation every later part is scaled, row by row,
    to the first part's L2 norm (MiniLM rows have norm 1, SmolLM2 hidden states far more, and the
    head's fixed search scale would otherwise ignore the small part); the first part is unchanged."""
    if isinstance(source, tuple):
        parts = []
        for s in source:
            f = route_features(s, prompts)
            if f.ndim != 2 or len(f) != len(prompts):
                raise DataError(f"data.encoder: feature source {_part_name(s)!r} gave shape {tuple(f.shape)} for "
                                f"{len(prompts)} prompts; every part needs one row per prompt")
            parts.append(f)
        ref = np.linalg.norm(parts[0], axis=1, keepdims=True)
        scaled = [parts[0]]
        for f in parts[1:]:
            n = np.linalg.norm(f, axis=1, keepdims=True)
            scaled.append(np.divide(f * ref, n, out=np.zeros_like(f), where=n > 0))
        return np.concatenate(scaled, axis=1).astype(np.float32)
    if isinstance(source, str):
        from routers.embed import encode
        return np.asarray(encode(list(prompts), encoder=source), dtype=np.float32)
    return source.features(route_texts(prompts), progress=True).numpy()


@dataclass
class RouteData:
    """Everything the route task's objective, selection and report read, fixed before training.
    Rows index `train`: `fit_rows` train the head, `select_rows` pick the returned point
    (`trinity.optimizers.Selector`), `report_rows` give the validation figure selection never saw."""
    train: object                      # RoutingDataset (cleaned, limited)
    test: object | None                # RoutingDataset in the head's worker order, or None
    workers: list[str]                 # head order
    fit_rows: np.ndarray
    select_rows: np.ndarray
    report_rows: np.ndarray
    costs: np.ndarray                  # decision costs of the fit rows (unpriced never free)
    tokens: np.ndarray | None          # worker tokens of the fit rows
    mean_cost: np.ndarray              # per worker over all training queries, for the checkpoint
    features: np.ndarray | None = None       # (len(train), d); None when features depend on SVF offsets
    test_features: np.ndarray | None = None

    @property
    def fit(self):
        return self.train.subset(self.fit_rows) if len(self.select_rows) + len(self.report_rows) else self.train


def route_data(cfg: TrinityConfig, train, test, source, *, features: bool = True) -> RouteData:
    """The route task's data stage. `data.validation_fraction` of the training queries is held out
    and halved (select, report); the test split is never looked at during training. `features`:
    compute the cached features (head mode) with `source` (a Coordinator or an encoder name)."""
    workers = list(train.models)
    if test is not None and list(test.models) != workers:
        missing = sorted(set(workers) - set(test.models))
        if missing:
            raise DataError(f"test data lacks the training models {', '.join(missing)}")
        test = test.select_models(workers)  # same column order as the head
    n_val = int(round(len(train) * cfg.data.validation_fraction))
    perm = np.random.default_rng([cfg.train.seed, 11]).permutation(len(train))
    fit_rows = np.sort(perm[n_val:])
    select_rows, report_rows = np.sort(perm[:n_val][: (n_val + 1) // 2]), np.sort(perm[:n_val][(n_val + 1) // 2:])
    fit = train.subset(fit_rows) if n_val else train
    tokens = None if fit.output_tokens is None else np.nan_to_num(fit.input_tokens) + np.nan_to_num(fit.output_tokens)
    mean_cost = decision_costs(train.cost_matrix()).mean(0) if len(train) else np.zeros(train.n_models)
    data = RouteData(train=train, test=test, workers=workers, fit_rows=fit_rows, select_rows=select_rows,
                     report_rows=report_rows, costs=decision_costs(fit.cost_matrix()), tokens=tokens,
                     mean_cost=mean_cost)
    if features:
        data.features = route_features(source, train.prompts)
        if test is not None and len(test):
            data.test_features = route_features(source, test.prompts)
    return data


# -- episode task --------------------------------------------------------------------------------
def load_items(spec: str, limit: int | None, seed: int) -> list:
    """Task items from `mmlu:200,gsm8k:100` style specs (items per task; `limit` caps the rest)."""
    from routers.tasks import get_task
    items = []
    for part in spec.split(","):
        name, _, n = part.strip().partition(":")
        items += get_task(name).load(int(n) if n else limit)
    if not items:
        raise DataError(f"data.train: {spec!r} gave no task items")
    rng = np.random.default_rng(seed)
    return [items[i] for i in rng.permutation(len(items))]


def embedded_episode_split(cfg: TrinityConfig):
    """The embedded default for episodes: packaged MMLU+GSM8K items of `routers.record.embedded_dataset`,
    `data.limit` training items from its train split and `limit * validation_fraction` (at least 12)
    held-out items from its test split, seeded. Returns (train_items, test_items, dataset, test_idx)
    so callers can score the foundation baselines on exactly the held-out questions."""
    from routers.record import embedded_dataset
    from routers.tasks.registry import load_task_items
    seed = cfg.train.seed
    ds = embedded_dataset(seed)
    items = {it.id: it for it in load_task_items("mmlu:600,gsm8k:400", seed=seed)}  # embedded_dataset's items
    train_ds, test_ds = ds.split("train"), ds.split("test")
    n_train = min(cfg.data.limit or len(train_ds), len(train_ds))
    n_test = min(len(test_ds), max(12, int(round(n_train * cfg.data.validation_fraction))))
    rng = np.random.default_rng(seed)
    tr_idx = np.sort(rng.permutation(len(train_ds))[:n_train])
    te_idx = np.sort(rng.permutation(len(test_ds))[:n_test])
    train_items = [items[i] for i in np.asarray(train_ds.ids)[tr_idx] if i in items]
    test_items = [items[i] for i in np.asarray(test_ds.ids)[te_idx] if i in items]
    if len(train_items) != n_train or len(test_items) != n_test:
        raise DataError("data.train 'embedded': the embedded dataset's ids do not match the packaged task items")
    return train_items, test_items, ds, te_idx



def episode_items(cfg: TrinityConfig) -> tuple[list, list]:
    """(train_items, test_items) of the episode task: the embedded split, or the `data.train`
    items with the first `validation_fraction` of them (seeded order) held out for testing."""
    if cfg.data.train == "embedded":
        train_items, test_items, _, _ = embedded_episode_split(cfg)
        return train_items, test_items
    items = load_items(cfg.data.train, cfg.data.limit, cfg.train.seed)
    n_test = int(round(len(items) * cfg.data.validation_fraction))
    return items[n_test:], items[:n_test]


def final_eval_items(cfg: TrinityConfig, items: list) -> list:
    """The training items the final argmax evaluation runs on: a seeded sample of at most
    `train.batch_size` (coordinator passes and worker calls are scarce)."""
    n = min(len(items), cfg.train.batch_size or len(items))
    return [items[i] for i in np.sort(np.random.default_rng([cfg.train.seed, 13]).choice(len(items), n, replace=False))]
