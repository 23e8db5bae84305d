"""Separable CMA-ES over the flat TRINITY vector [SVF offsets; head], through pycma's ask/tell.

The loop is visible on purpose (pycma style):

    es = cma.CMAEvolutionStrategy(x0, sigma0, {"CMA_diagonal": True, "popsize": P, "seed": s})
    while generation < iterations:
        X = es.ask()                                   # P candidates
        results = objective.evaluate(X[my_slice], g)   # each process its slice
        es.tell(X, [-r.fitness for r in gather(results)])

Resume: after every generation the strategy (pickled by pycma's own support), numpy's global RNG
(which pycma samples from), the generation and the history are written to `trainer_state.pkl` in
the output directory. Between generations the strategy is always continued from its serialized
form, so a run killed and resumed follows exactly the path of an uninterrupted one.

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
from typing import Any, Callable

import numpy as np

from routers.errors import CheckpointError, ConfigError
from trinity.config import TrainConfig
from trinity.fitness import FitnessResult, Objective

STATE_FILE = "trainer_state.pkl"


@dataclass
class TrainResult:
    x: np.ndarray                   # the distribution mean at the end (the trained vector)
    best_x: np.ndarray              # best sampled candidate seen (noisy: prefer x)
    best_fitness: float
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluations: int = 0
    selection: dict[str, Any] = field(default_factory=dict)  # which point was returned, and why


class Distributed:
    """This process's rank and world size; gather lists of results from every process."""

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


def is_main_process() -> bool:
    """False on the non-main ranks of an `accelerate launch` (they evaluate, but write nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


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
        self.bar.set_postfix(best=f"{row['best_fitness']:.3f}", mean=f"{row['mean_fitness']:.3f}",
                             acc=f"{row['mean_accuracy']:.3f}")
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
    keys = {k: v for k, v in asdict(cfg).items() if k not in ("iterations", "wandb", "wandb_project")}
    return hashlib.sha256(json.dumps([keys, n_params], sort_keys=True).encode()).hexdigest()[:16]


class CMAESTrainer:
    """sep-CMA-ES (`CMA_diagonal`) on any `Objective`; resumable; shardable with accelerate."""

    def __init__(self, objective: Objective, cfg: TrainConfig, out_dir: str | Path | None = None,
                 run_config: dict | None = None, name: str = "trinity",
                 on_generation: Callable[[dict[str, Any]], None] | None = None,
                 validate: Callable[[np.ndarray], float] | None = None):
        """`validate(x) -> score` (optional): scored on the distribution mean after every generation;
        the run then returns the best-scoring mean (early stopping on held-out queries)."""
        self.objective, self.cfg, self.validate = objective, cfg, validate
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.run_config, self.name, self.on_generation = run_config, name, on_generation
        self.dist = Distributed()

    # -- state -------------------------------------------------------------------------------
    def _fresh_state(self, x0: np.ndarray | None = None) -> dict[str, Any]:
        import cma
        opts = {"CMA_diagonal": True, "seed": int(self.cfg.seed) + 1, "verbose": -9,
                "maxiter": 10 ** 9, "tolfun": 0, "tolx": 0, "tolfunhist": 0, "tolflatfitness": 10 ** 9,
                "tolstagnation": 10 ** 9}
        if self.cfg.popsize is not None:
            opts["popsize"] = int(self.cfg.popsize)
        x0 = self.objective.x0() if x0 is None else np.asarray(x0, dtype=np.float64)
        es = cma.CMAEvolutionStrategy(x0, self.cfg.sigma0, opts)  # seeds numpy's global RNG
        return {"es": pickle.dumps(es), "np_random": np.random.get_state(), "generation": 0,
                "history": [], "best_x": x0.copy(), "best_fitness": -np.inf, "evaluations": 0,
                "val_x": x0.copy(), "val_score": -np.inf,
                "fingerprint": _fingerprint(self.cfg, self.objective.n_params)}

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
        if state.get("fingerprint") != _fingerprint(self.cfg, self.objective.n_params):
            raise ConfigError(f"{path}: saved by a run with another training config or parameter count; "
                              "use a new --out directory or the same config to resume")
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        path = self.state_path()
        if path is None or not self.dist.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(state))
        os.replace(tmp, path)

    # -- loop --------------------------------------------------------------------------------
    def run(self, resume: bool = False, x0: np.ndarray | None = None, stop_after: int | None = None) -> TrainResult:
        """Run to `cfg.iterations` generations (from the saved state if `resume`).
        `stop_after` ends early after that many generations in this call (used to test resume)."""
        state = self._load_state() if resume else None
        if state is None:
            state = self._fresh_state(x0)
        logger = RunLogger(self.cfg, self.cfg.iterations, state["generation"], self.out_dir, self.run_config,
                           self.name, enabled=self.dist.is_main)
        if self.dist.world > 1 and self.dist.is_main:
            print(f"sep-CMA-ES: population sharded over {self.dist.world} processes", flush=True)
        done_here = 0
        try:
            while state["generation"] < self.cfg.iterations:
                if stop_after is not None and done_here >= stop_after:
                    break
                t0 = time.perf_counter()
                g = state["generation"]
                es = pickle.loads(state["es"])
                np.random.set_state(state["np_random"])
                X = np.asarray(es.ask(), dtype=np.float64)
                mine = self.dist.shard(len(X))
                local = self.objective.evaluate(X[mine], g, mine.tolist())
                results = [FitnessResult(**r) for r in self.dist.gather([asdict(r) for r in local])]
                es.tell(list(X), [-r.fitness for r in results])
                best = int(np.argmax([r.fitness for r in results]))
                if results[best].fitness > state["best_fitness"]:
                    state["best_fitness"], state["best_x"] = results[best].fitness, X[best].copy()
                row = summarize(g, results, es.sigma, time.perf_counter() - t0)
                if self.validate is not None:
                    mean = np.asarray(es.result.xfavorite, dtype=np.float64)
                    row["validation"] = float(self.validate(mean))
                    if row["validation"] > state["val_score"]:
                        state["val_score"], state["val_x"] = row["validation"], mean.copy()
                state.update(es=pickle.dumps(es), np_random=np.random.get_state(), generation=g + 1,
                             evaluations=state["evaluations"] + len(X))
                state["history"].append(row)
                self._save_state(state)
                logger.log(row)
                if self.on_generation is not None and self.dist.is_main:
                    self.on_generation(row)
                done_here += 1
        finally:
            logger.close()
        es = pickle.loads(state["es"])
        x = state["val_x"] if self.validate is not None and state["history"] else es.result.xfavorite
        return TrainResult(x=np.asarray(x, dtype=np.float64).copy(), best_x=state["best_x"],
                           best_fitness=float(state["best_fitness"]), history=state["history"],
                           evaluations=state["evaluations"])
