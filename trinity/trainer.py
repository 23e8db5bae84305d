"""Ask/tell search strategies over the flat TRINITY vector [SVF offsets; head], and what every
optimizer run shares: process sharding, the per-generation log row, the progress/wandb logger.

The strategies know nothing about objectives; `trinity.optimizers.optimize` runs the loop
(pycma style):

    opt = SepCMAES(cfg, n_params, x0, out_dir, resume)    # or RandomSearch
    while not opt.done:
        X = opt.ask()                                      # P candidates
        mine = dist.shard(len(X))                          # each process scores its slice
        results = dist.gather_results(objective.evaluate(X[mine], opt.generation, mine.tolist()))
        mean = opt.tell(X, results)                        # the point selection may score
        opt.end_generation(validation=score(mean))         # history row, resumable state, progress

- `SepCMAES`: separable CMA-ES (pycma's `CMA_diagonal`), the method. Resume: after every
  generation the strategy (pickled by pycma's own support), numpy's global RNG (which pycma
  samples from), the generation, the history and the best-validation point are written to
  `trainer_state.pkl` in the output directory. Between generations the strategy is always
  continued from its serialized form, so a run killed and resumed follows exactly the path of an
  uninterrupted one.
- `RandomSearch`: each generation samples `popsize` candidates around the best so far with a
  fixed step sigma0 and keeps the best (same number of fitness evaluations as CMA-ES).

Sharding: under `accelerate launch --multi_gpu --num_processes N` (also on CPU-only machines, where
the processes talk over gloo; accelerate's `--cpu` flag alone starts a single process), every process runs the same ask/tell (same
seed, same RNG), evaluates its slice of the population, and the fitness values are gathered with
`accelerate.utils.gather_object`; only the main process writes state and logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routers.errors import CheckpointError, ConfigError
from trinity.config import TrainConfig, default_popsize
from trinity.fitness import FitnessResult

STATE_FILE = "trainer_state.pkl"


@dataclass
class TrainResult:
    x: np.ndarray                   # the returned point (by the selection rule; see trinity.optimizers)
    best_x: np.ndarray              # best sampled candidate seen (noisy: prefer x)
    best_fitness: float
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: int = 0
    selection: dict[str, Any] = field(default_factory=dict)  # which point was returned, and why


class Distributed:
    """This process's rank and world size; each process evaluates its slice of a population."""

    def __init__(self):
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState
            # Without CUDA, gloo over CPU processes (accelerate's MULTI_CPU).
            self.state = PartialState(cpu=not torch.cuda.is_available())
        self.rank = 0 if self.state is None else self.state.process_index
        self.world = 1 if self.state is None else self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        return np.array_split(np.arange(n), self.world)[self.rank]

    def gather(self, items: list) -> list:
        if self.world == 1:
            return items
        from accelerate.utils import gather_object
        return gather_object(items)

    def gather_results(self, local: list[FitnessResult]) -> list[FitnessResult]:
        """Every process's fitness results for its `shard`, in population order."""
        return [FitnessResult(**r) for r in self.gather([asdict(r) for r in local])]


def summarize(generation: int, results: list[FitnessResult], sigma: float, seconds: float) -> dict[str, Any]:
    """One generation's log row: best/mean fitness, accuracy, cost, tokens, worker/role histograms."""
    f = np.array([r.fitness for r in results])
    best = int(f.argmax())
    workers: dict[str, int] = {}
    roles: dict[str, int] = {}
    for r in results:
        for k, v in r.worker_hist.items():
            workers[k] = workers.get(k, 0) + v
        for k, v in r.role_hist.items():
            roles[k] = roles.get(k, 0) + v
    return {"generation": generation, "best_fitness": float(f[best]), "mean_fitness": float(f.mean()),
            "best_accuracy": results[best].accuracy,
            "mean_accuracy": float(np.mean([r.accuracy for r in results])),
            "mean_cost": float(np.mean([r.cost for r in results])),
            "mean_tokens": float(np.mean([r.tokens for r in results])),
            "mean_turns": float(np.mean([r.turns for r in results])),
            "sigma": float(sigma), "seconds": float(seconds), "workers": workers, "roles": roles}


class RunLogger:
    """Progress bar plus wandb (offline unless WANDB_MODE says otherwise); main process only."""

    def __init__(self, cfg: TrainConfig, total: int, initial: int, out_dir: Path | None, config: dict | None,
                 name: str, enabled: bool, desc: str = "sep-CMA-ES"):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="gen", mininterval=2.0)
        self.run = None
        if enabled and cfg.wandb:
            import wandb
            os.environ.setdefault("WANDB_MODE", "offline")
            self.run = wandb.init(project=cfg.wandb_project, name=name, config=config or {},
                                  dir=str(out_dir) if out_dir else None, reinit="finish_previous")

    def log(self, row: dict[str, Any]) -> None:
        self.bar.update(1)
        spend = {} if "spend_usd" not in row else {  # episode training (trinity.spend); None: unknown
            "spend": "?" if row["spend_usd"] is None else f"${row['spend_usd']:.4g}",
            "hits": f"{row['cache_hit_rate']:.2f}"}
        self.bar.set_postfix(best=f"{row['best_fitness']:.3f}", mean=f"{row['mean_fitness']:.3f}",
                             acc=f"{row['mean_accuracy']:.3f}", **spend)
        if self.run is not None:
            flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
            flat.update({f"workers/{k}": v for k, v in row["workers"].items()})
            flat.update({f"roles/{k}": v for k, v in row["roles"].items()})
            self.run.log(flat, step=row["generation"])

    def close(self) -> None:
        self.bar.close()
        if self.run is not None:
            self.run.finish()


def _fingerprint(cfg: TrainConfig, n_params: int) -> str:
    # what the search path depends on: a budget (trinity.spend) or a run length may change on resume
    keys = {k: v for k, v in asdict(cfg).items()
            if k not in ("iterations", "wandb", "wandb_project", "max_spend_usd", "unpriced_cost_usd")}
    return hashlib.sha256(json.dumps([keys, n_params], sort_keys=True).encode()).hexdigest()[:16]


class SepCMAES:
    """sep-CMA-ES (`CMA_diagonal`) as ask/tell; resumable from `out_dir/trainer_state.pkl`."""

    desc = "sep-CMA-ES"

    def __init__(self, cfg: TrainConfig, n_params: int, x0: np.ndarray, out_dir: str | Path | None = None,
                 resume: bool = False, is_main: bool = True):
        self.cfg, self.n_params, self.is_main = cfg, int(n_params), is_main
        self.out_dir = None if out_dir is None else Path(out_dir)
        state = self._load_state() if resume else None
        self.state = self._fresh_state(np.asarray(x0, dtype=np.float64)) if state is None else state
        self._es = None

    # -- state -------------------------------------------------------------------------------
    def _fresh_state(self, x0: np.ndarray) -> dict[str, Any]:
        import cma
        opts = {"CMA_diagonal": True, "seed": int(self.cfg.seed) + 1, "verbose": -9,
                "maxiter": 10 ** 9, "tolfun": 0, "tolx": 0, "tolfunhist": 0, "tolflatfitness": 10 ** 9,
                "tolstagnation": 10 ** 9}
        if self.cfg.popsize is not None:
            opts["popsize"] = int(self.cfg.popsize)
        es = cma.CMAEvolutionStrategy(x0, self.cfg.sigma0, opts)  # seeds numpy's global RNG
        return {"es": pickle.dumps(es), "np_random": np.random.get_state(), "generation": 0,
                "history": [], "best_x": x0.copy(), "best_fitness": -np.inf, "evaluations": 0,
                "val_x": x0.copy(), "val_score": -np.inf,
                "fingerprint": _fingerprint(self.cfg, self.n_params)}

    def state_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / STATE_FILE

    def _load_state(self) -> dict[str, Any] | None:
        path = self.state_path()
        if path is None or not path.is_file():
            return None
        # Our own file, written by _save_state in the run's output directory (atomically, so a
        # damaged one was cut or changed by something else: say so instead of a pickle traceback).
        try:
            state = pickle.loads(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - unpickling a damaged file raises almost anything
            raise CheckpointError(f"{path}: cannot resume, the saved training state is truncated or corrupt "
                                  f"({type(e).__name__}: {e}); restore it, delete it to start over, or use "
                                  "a new --out directory") from None
        if not isinstance(state, dict) or not {"es", "np_random", "generation"} <= set(state):
            raise CheckpointError(f"{path}: cannot resume, not a TRINITY training state; use a new --out directory")
        if state.get("fingerprint") != _fingerprint(self.cfg, self.n_params):
            raise ConfigError(f"{path}: saved by a run with another training config or parameter count; "
                              "use a new --out directory or the same config to resume")
        return state

    def _save_state(self) -> None:
        path = self.state_path()
        if path is None or not self.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(self.state))
        os.replace(tmp, path)

    # -- ask / tell ----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self.state["generation"]

    @property
    def done(self) -> bool:
        return self.state["generation"] >= self.cfg.iterations

    def ask(self) -> np.ndarray:
        """This generation's population (the strategy continues from its serialized form)."""
        self._t0 = time.perf_counter()
        self._es = pickle.loads(self.state["es"])
        np.random.set_state(self.state["np_random"])
        return np.asarray(self._es.ask(), dtype=np.float64)

    def tell(self, X: np.ndarray, results: list[FitnessResult]) -> np.ndarray:
        """Update the strategy with the population's fitness; returns the new distribution mean."""
        es, state = self._es, self.state
        es.tell(list(X), [-r.fitness for r in results])
        best = int(np.argmax([r.fitness for r in results]))
        if results[best].fitness > state["best_fitness"]:
            state["best_fitness"], state["best_x"] = results[best].fitness, X[best].copy()
        self._row = summarize(state["generation"], results, es.sigma, time.perf_counter() - self._t0)
        self._n = len(X)
        return np.asarray(es.result.xfavorite, dtype=np.float64)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state["history"]

    def end_generation(self, validation: float | None = None, point: np.ndarray | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the generation: the selection score of `point` (the mean `tell` returned), the
        history row (plus `extra` fields, e.g. spend), the saved state. Returns the row."""
        state, row = self.state, self._row
        row.update(extra or {})
        if validation is not None:
            row["validation"] = float(validation)
            if row["validation"] > state["val_score"]:
                state["val_score"], state["val_x"] = row["validation"], np.asarray(point, np.float64).copy()
        state.update(es=pickle.dumps(self._es), np_random=np.random.get_state(), generation=state["generation"] + 1,
                     evaluations=state["evaluations"] + self._n)
        state["history"].append(row)
        self._save_state()
        return row

    def result(self, selected: bool) -> TrainResult:
        """The run so far: the best-validation mean if `selected` (and a generation ran), else the last mean."""
        state = self.state
        es = pickle.loads(state["es"])
        x = state["val_x"] if selected and state["history"] else es.result.xfavorite
        return TrainResult(x=np.asarray(x, dtype=np.float64).copy(), best_x=state["best_x"],
                           best_fitness=float(state["best_fitness"]), history=state["history"],
                           evaluations=state["evaluations"])


class RandomSearch:
    """Best-so-far plus `sigma0` Gaussian steps, `popsize` candidates a generation, as ask/tell."""

    desc = "random search"

    def __init__(self, cfg: TrainConfig, n_params: int, x0: np.ndarray):
        self.cfg, self.n_params = cfg, int(n_params)
        self.rng = np.random.default_rng([cfg.seed, 7])
        self.P = int(cfg.popsize) if cfg.popsize is not None else default_popsize(self.n_params)
        self.best_x, self.best_f = np.asarray(x0, np.float64), -np.inf
        self.generation, self.history = 0, []

    @property
    def done(self) -> bool:
        return self.generation >= self.cfg.iterations

    def ask(self) -> np.ndarray:
        return self.best_x[None] + self.cfg.sigma0 * self.rng.standard_normal((self.P, self.n_params))

    def tell(self, X: np.ndarray, results: list[FitnessResult]) -> np.ndarray:
        """Keep the best candidate; returns the best point so far."""
        k = int(np.argmax([r.fitness for r in results]))
        if results[k].fitness > self.best_f:
            self.best_x, self.best_f = X[k].copy(), results[k].fitness
        self._row = summarize(self.generation, results, self.cfg.sigma0, 0.0)
        return self.best_x

    def end_generation(self, validation: float | None = None, point: np.ndarray | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
        row = self._row
        row.update(extra or {})
        row["validation"] = validation       # every generation offers its point (None: no selection)
        self.history.append(row)
        self.generation += 1
        return row

    def result(self, selected: bool) -> TrainResult:
        return TrainResult(x=self.best_x, best_x=self.best_x, best_fitness=float(self.best_f), history=self.history,
                           evaluations=self.P * self.cfg.iterations)
