"""Train a Conductor with trl's GRPOTrainer: the reward executes each sampled workflow.

    cfg = load_config("configs/conductor/demo.yaml", ["grpo.max_steps=5"])
    summary = train(cfg, out="outputs/conductor-demo")      # checkpoint + reward_curve.{json,png}

GRPO as in the paper: no KL term (beta 0), group-normalized advantages, lr 1e-6 with a cosine
schedule (configs override it for short CPU runs). The `grpo` section is trl's GRPOConfig (any field:
loss_type, use_vllm, epsilon, ...). Each prompt shows a random subset of the pool
when `pool.subset` is set (adaptive pools). Trainer checkpoints go to `<out>/trainer/checkpoint-N`
every `grpo.save_steps`; `--resume` continues from the last one. Multi-GPU: `accelerate launch
scripts/train_conductor.py --config ...` (the trainer shards generation and the reward batch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from conductor.config import ConductorConfig, load_config
from conductor.env import ConductorEnv
from conductor.reward import WorkflowReward
from routers.errors import ConfigError


def check_policy_model(cfg: ConductorConfig) -> str:
    """The policy's local path (or hub id), checked before any pool, data or training work: a
    model that cannot be found is a ConfigError naming `policy.model`, not a transformers traceback
    a minute into the run. Reads only the model's config.json (packaged GGUFs are converted once,
    as loading them would anyway)."""
    from transformers import AutoConfig

    from routers.model_files import resolve_model

    spec = cfg.policy.model
    try:
        path = resolve_model(spec)
        AutoConfig.from_pretrained(path)
    except ConfigError as e:
        raise ConfigError(f"policy.model: {e}") from None
    except (OSError, ValueError) as e:  # not a local folder, and not a hub id it can reach or has cached
        raise ConfigError(f"policy.model: cannot load {spec!r}: not a packaged model (tiny, smollm2), a .gguf "
                          f"file, an HF model folder, or a hub id that is reachable or cached ({e})") from None
    return path


def split_items(env: ConductorEnv) -> tuple[list, list]:
    d = env.cfg.data
    items = env.task.load(limit=d.train_limit + d.eval_limit, seed=d.seed) if env.cfg.data.task == "toy" \
        else env.task.load(limit=d.train_limit + d.eval_limit)
    if not items or len(items) < d.train_limit:
        raise ConfigError(f"data.task {d.task!r}: only {len(items)} items, need train_limit={d.train_limit}")
    return items[:d.train_limit], items[d.train_limit:d.train_limit + d.eval_limit]


def grpo_config(cfg: ConductorConfig, out: Path):
    """trl.GRPOConfig from `cfg.grpo` (already validated by TRL at load) plus the fields our own
    keys set (config.GRPO_DERIVED); on a machine without CUDA it runs on the CPU unless grpo.use_cpu
    says otherwise."""
    from trl import GRPOConfig

    g, t = dict(cfg.grpo), cfg.train
    g.setdefault("use_cpu", not torch.cuda.is_available())
    g.setdefault("run_name", cfg.name)
    if t.wandb:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(out))
    try:
        return GRPOConfig(output_dir=str(out / "trainer"), per_device_train_batch_size=t.prompts_per_step * g["num_generations"],
                          report_to=["wandb"] if t.wandb else "none", remove_unused_columns=False, **g)
    except ValueError as e:  # what only this machine can refuse (bf16 without a GPU, ...)
        raise ConfigError(f"grpo: {e} (trl.GRPOConfig on this machine)") from None


def build_trainer(cfg: ConductorConfig, out: Path, env: ConductorEnv, train_items: list,
                  model=None, tokenizer=None):
    """(GRPOTrainer, WorkflowReward). `model`/`tokenizer` default to `cfg.policy.model`."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from conductor.policy import Generator, load_policy

    if model is None:
        model, tokenizer = load_policy(cfg.policy.model, cfg.policy.dtype)
    env.add_items(train_items)
    rows = env.dataset_rows(train_items, cfg.grpo["seed"])
    reward = WorkflowReward(env)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=grpo_config(cfg, out),
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    if cfg.recursion.enabled:  # nested workflows are written by the current policy, greedily
        def generate(prompts: list[str]) -> list[str]:
            m = trainer.accelerator.unwrap_model(trainer.model)
            return Generator(m, tokenizer, cfg.grpo["max_completion_length"]).texts(prompts)
        reward.generate = generate
    return trainer, reward


def reward_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    keys = ("reward", "reward_std", "conductor/parse_rate", "conductor/accuracy", "conductor/mean_steps",
            "conductor/worker_failure_rate")
    # trl logs NaN for a step whose every rollout was unscorable (worker failures): unknown, kept as None
    return [{"step": h["step"], **{k.split("/")[-1]: (None if h[k] != h[k] else h[k]) for k in keys if k in h}}
            for h in log_history if "reward" in h]


def plot_curve(curve: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [c["step"] for c in curve]
    for k in ("reward", "accuracy", "parse_rate"):
        if curve and k in curve[0]:
            ax.plot(steps, [float("nan") if c.get(k) is None else c[k] for c in curve], label=k, marker=".", alpha=0.5)
    if len(curve) >= 5:  # the per-step mean is noisy (a few prompts per step): show a moving mean
        w = max(5, len(curve) // 8)
        r = [float("nan") if c["reward"] is None else c["reward"] for c in curve]
        ax.plot(steps[w - 1:], [sum(r[i - w + 1:i + 1]) / w for i in range(w - 1, len(r))],
                label=f"reward, mean of {w}", color="black", linewidth=2)
    ax.set_xlabel("GRPO step")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train(cfg: ConductorConfig, out: str | Path | None = None, *, resume: bool = False,
          evaluate: bool = True, env: ConductorEnv | None = None, progress: bool = True) -> dict[str, Any]:
    """Train, save the checkpoint to `out`, write reward_curve.json/.png and summary.json there."""
    from transformers.trainer_utils import get_last_checkpoint

    from conductor.checkpoint import save_conductor
    from conductor.evaluate import evaluate_policy
    from conductor.policy import Generator

    check_policy_model(cfg)  # config values were checked when it was loaded; the model is checked here
    out = Path(out or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.train.cpu_threads:
        torch.set_num_threads(cfg.train.cpu_threads)
    env = env or ConductorEnv.from_config(cfg)
    env.check()
    train_items, eval_items = split_items(env)
    trainer, reward = build_trainer(cfg, out, env, train_items)
    model, tok = trainer.model, trainer.processing_class
    last = None
    if resume:
        last = get_last_checkpoint(str(out / "trainer")) if (out / "trainer").is_dir() else None
        if last is None:
            raise ConfigError(f"--resume: no trainer checkpoint under {out / 'trainer'}")
    summary: dict[str, Any] = {"config": cfg.to_dict(), "resumed_from": last}
    if cfg.warmstart.steps and not resume:
        from conductor.warmstart import format_targets, warm_start
        ws = cfg.warmstart
        pairs = format_targets(env, train_items, [r["workers"] for r in trainer.train_dataset], cfg.grpo["seed"],
                               max_len=1)
        losses = warm_start(model, tok, pairs, steps=ws.steps, lr=ws.learning_rate,
                            batch_size=ws.batch_size, seed=cfg.grpo["seed"], progress=progress)
        summary["warmstart_loss"] = {"first": losses[0], "last": losses[-1]}
    greedy = Generator(model, tok, cfg.grpo["max_completion_length"])
    if evaluate and eval_items and not resume:
        summary["eval_before"] = evaluate_policy(greedy, env, eval_items, progress=progress)
    trainer.train(resume_from_checkpoint=last)
    if not trainer.accelerator.is_main_process:
        return summary
    model = trainer.accelerator.unwrap_model(trainer.model)
    if evaluate and eval_items:
        summary["eval_after"] = evaluate_policy(Generator(model, tok, cfg.grpo["max_completion_length"]),
                                                env, eval_items, progress=progress)
    save_conductor(model, tok, env, out, metrics=summary.get("eval_after"))  # onto the model card too
    curve = reward_curve(trainer.state.log_history)
    summary["curve"] = curve
    (out / "reward_curve.json").write_text(json.dumps(curve, indent=2))
    plot_curve(curve, out / "reward_curve.png", f"Conductor GRPO: {cfg.name}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def cli_train(args) -> int:
    """`baton train conductor --config C [--train TASK] [--out DIR] [--resume] [key=value ...]`."""
    overrides = list(args.overrides or [])
    if args.train:
        overrides.append(f"data.task={args.train}")
    cfg = load_config(args.config, overrides)
    s = train(cfg, args.out, resume=args.resume)
    out = Path(args.out or cfg.out)
    curve = [c for c in s.get("curve", []) if c["reward"] is not None]
    if curve:
        k = max(1, len(curve) // 4)
        first = sum(c["reward"] for c in curve[:k]) / k
        last = sum(c["reward"] for c in curve[-k:]) / k
        print(f"mean reward: first {k} steps {first:.3f} -> last {k} steps {last:.3f}")
    for key in ("eval_before", "eval_after"):
        if key in s:
            e = s[key]
            fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731  (None: every item hit a worker failure)
            print(f"{key}: reward {fmt(e['mean_reward'])} accuracy {fmt(e['accuracy'])} parse rate {e['parse_rate']:.3f}"
                  f" worker failures {e['worker_failure_rate']:.3f}")
    print(f"checkpoint: {out}  (curve: {out / 'reward_curve.png'})")
    return 0
