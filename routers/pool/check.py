"""`baton pool check POOL.yaml`: call every worker once, concurrently, and print what came back.

A quick way to see that keys, URLs and models are right before recording or serving. Replay
workers are asked their recording's first query (they answer nothing else). Exit code 0 when every
worker answered, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from routers.pool.config import load_pool
from routers.pool.pool import Pool
from routers.pool.replay import ReplayWorker


async def check_pool(pool: Pool, prompt: str = "Reply with the single word: pong",
                     max_tokens: int = 16) -> list[dict[str, Any]]:
    """One row per worker: name, model, reachable, latency_s, tokens, prices, error."""
    messages = [{"role": "user", "content": prompt}]

    async def one(name: str) -> dict[str, Any]:
        w = pool[name]
        row: dict[str, Any] = {"worker": name, "model": w.model, "input_price": w.input_price,
                               "output_price": w.output_price}
        t0 = time.perf_counter()
        try:
            hint = {}
            if isinstance(w, ReplayWorker):  # a recording answers only recorded queries: ask its first one
                hint = {"item_id": w.data.dataset.ids[0]}
            r = await w.chat(messages, max_tokens=max_tokens, temperature=0.0, **hint)
        except Exception as e:  # noqa: BLE001 - report every failure in the table
            row.update(reachable=False, latency_s=time.perf_counter() - t0, input_tokens=None,
                       output_tokens=None, error=f"{type(e).__name__}: {e}")
        else:
            # the reply's own latency: measured for live backends, simulated/recorded for the others
            row.update(reachable=True, latency_s=r.latency_s, input_tokens=r.input_tokens,
                       output_tokens=r.output_tokens, error="", reply=r.text[:80])
        return row

    try:
        return list(await asyncio.gather(*(one(n) for n in pool.names)))
    finally:
        await pool.aclose()


def render_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in ("worker", "model", "reachable", "latency", "in tok", "out tok", "$/M in", "$/M out", "error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["worker"], r["model"], "[green]yes[/]" if r["reachable"] else "[red]no[/]",
                  f"{r['latency_s']:.2f} s", str(r["input_tokens"] if r["input_tokens"] is not None else "-"),
                  str(r["output_tokens"] if r["output_tokens"] is not None else "-"),
                  f"{r['input_price']:g}", f"{r['output_price']:g}", r["error"][:200])
    return t


def cli_check(args) -> int:
    pool = load_pool(args.pool_file)
    rows = asyncio.run(check_pool(pool, prompt=args.prompt))
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    else:
        Console().print(render_table(rows, f"pool {pool.config.get('name')} ({args.pool_file})"))
    return 0 if all(r["reachable"] for r in rows) else 1
