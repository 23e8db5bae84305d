"""Price tables and the costs they give a dataset whose file has none.

Accepted price files (all read into $ per million input/output tokens):
  - LiteLLM:   {model: {input_cost_per_token, output_cost_per_token, ...}}           ($/token)
  - OpenRouter: {"data"|"models": [{id|model_id, pricing: {prompt, completion}}]}    ($/token)
                or entries with input_per_mtok / output_per_mtok                     ($/M)
  - LLMRouter default_llm.json: {model: {input_price, output_price, model?}}         ($/M)
  - baton's own: {model: {input_per_mtok, output_per_mtok}}, e.g. the built-in "builtin" table.
A top-level "default_output_tokens" number overrides the output length assumed when a row has no
response and no token count.

Cost of one (query, model) cell = (input_tokens * in + output_tokens * out) / 1e6. Where the file has
no token counts we estimate them: input = len(prompt) / 4 (~4 characters per token for English),
output = len(response) / 4, or `default_output_tokens` (256) when there is no response either.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from routers.data.schema import RoutingDataset
from routers.errors import DataError

CHARS_PER_TOKEN = 4.0
DEFAULT_OUTPUT_TOKENS = 256.0
BUILTIN_PATH = Path(__file__).with_name("known_prices.json")


@dataclass
class PriceTable:
    """model -> (USD per million input tokens, USD per million output tokens)."""

    prices: dict[str, tuple[float, float]]
    source: str = "dict"
    default_output_tokens: float = DEFAULT_OUTPUT_TOKENS
    _by_lower: dict[str, str] = field(default_factory=dict, repr=False)
    _by_tail: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for k in self.prices:  # first entry wins on a clash (file order)
            self._by_lower.setdefault(k.lower(), k)
            self._by_tail.setdefault(k.rsplit("/", 1)[-1].lower(), k)

    def lookup(self, model: str) -> tuple[float, float] | None:
        """Exact name, then case-insensitive, then by the part after the last '/' (case-insensitive)."""
        if model in self.prices:
            return self.prices[model]
        key = self._by_lower.get(model.lower()) or self._by_tail.get(model.rsplit("/", 1)[-1].lower())
        return None if key is None else self.prices[key]


def _num(v, *, file: str, model: str, fld: str, row: int | None = None) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise DataError(f"price {v!r} of model {model!r} is not a number", file=file, row=row, column=fld) from None
    if not np.isfinite(x) or x < 0:
        raise DataError(f"price {v!r} of model {model!r} must be a finite number >= 0", file=file, row=row,
                        column=fld)
    return x


def _entry(d: dict, *, file: str, model: str, row: int | None = None) -> tuple[float, float] | None:
    """One entry of any accepted style -> ($/M in, $/M out), or None when it carries no token price."""
    pairs = [("input_cost_per_token", "output_cost_per_token", 1e6), ("input_price", "output_price", 1.0),
             ("input_per_mtok", "output_per_mtok", 1.0)]
    if isinstance(d.get("pricing"), dict):
        p = d["pricing"]
        if p.get("prompt") is None and p.get("completion") is None:
            return None
        return (_num(p.get("prompt", 0), file=file, model=model, fld="pricing.prompt", row=row) * 1e6,
                _num(p.get("completion", 0), file=file, model=model, fld="pricing.completion", row=row) * 1e6)
    for a, b, scale in pairs:
        if d.get(a) is not None or d.get(b) is not None:
            return (_num(d.get(a, 0), file=file, model=model, fld=a, row=row) * scale,
                    _num(d.get(b, 0), file=file, model=model, fld=b, row=row) * scale)
    return None


def parse_prices(obj, *, source: str = "dict") -> PriceTable:
    """Read any accepted price mapping (see module docstring) into a PriceTable."""
    if not isinstance(obj, dict):
        raise DataError(f"a price table must be a JSON object, got {type(obj).__name__}", file=source)
    prices: dict[str, tuple[float, float]] = {}
    listed = next((obj[k] for k in ("data", "models") if isinstance(obj.get(k), list)), None)
    if listed is not None:  # OpenRouter style
        for i, e in enumerate(listed, start=1):
            if not isinstance(e, dict):
                raise DataError("price entry is not an object", file=source, row=i)
            name = e.get("id") or e.get("model_id") or e.get("model")
            if not name:
                raise DataError("price entry has no id/model_id", file=source, row=i, column="id")
            pr = _entry(e, file=source, model=name, row=i)
            if pr is not None:
                prices[str(name)] = pr
    else:  # {model: {...}}: LiteLLM, LLMRouter, baton
        aliases = {}
        for name, e in obj.items():
            if name.startswith("_") or name in ("sample_spec", "default_output_tokens") or not isinstance(e, dict):
                continue
            pr = _entry(e, file=source, model=name)
            if pr is not None:
                prices[name] = pr
                if isinstance(e.get("model"), str):  # LLMRouter: "model": "qwen/qwen2.5-7b-instruct"
                    aliases[e["model"]] = pr
        for a, pr in aliases.items():
            prices.setdefault(a, pr)
    if not prices:
        raise DataError("no token prices found; expected LiteLLM ({model: {input_cost_per_token, ...}}), "
                        "OpenRouter ({data|models: [...]}) or LLMRouter ({model: {input_price, output_price}}) style",
                        file=source)
    dot = obj.get("default_output_tokens", DEFAULT_OUTPUT_TOKENS)
    dot = _num(dot, file=source, model="(all)", fld="default_output_tokens")
    return PriceTable(prices, source=source, default_output_tokens=dot)


def load_prices(path_or_dict) -> PriceTable:
    """A PriceTable from a file path, a dict, an existing PriceTable, or the name "builtin"."""
    if isinstance(path_or_dict, PriceTable):
        return path_or_dict
    if isinstance(path_or_dict, dict):
        return parse_prices(path_or_dict, source="dict")
    if str(path_or_dict) == "builtin":
        path_or_dict = BUILTIN_PATH
    path = Path(path_or_dict)
    if not path.is_file():
        raise DataError("price table not found (give a JSON file, a dict, or 'builtin')", file=str(path))
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (line {e.lineno}, char {e.colno})", file=str(path),
                        row=e.lineno) from None
    return parse_prices(obj, source=str(path))


def _text_tokens(texts: list[str | None]) -> np.ndarray:
    return np.array([np.nan if t is None else len(t) / CHARS_PER_TOKEN for t in texts], dtype=np.float64)


def apply_prices(ds: RoutingDataset, table: PriceTable) -> RoutingDataset:
    """Fill the cells whose cost the file did not give from `table`; keeps file costs as they are.

    Only cells with a score are priced: a model that never answered a query cost nothing we know of.

    Models without a price keep NaN costs and are named in a warning (never a silent 0).
    """
    n, m = len(ds), ds.n_models
    costs = np.full((n, m), np.nan) if ds.costs is None else ds.costs.copy()
    todo = np.isnan(costs) & ~np.isnan(ds.scores)  # a cell never run (score NaN) has no cost to estimate
    in_est = _text_tokens(ds.prompts)
    unpriced, estimated = [], 0
    for j, model in enumerate(ds.models):
        rows = todo[:, j]
        if not rows.any():
            continue
        pr = table.lookup(model)
        if pr is None:
            unpriced.append(model)
            continue
        tin = in_est.copy()
        if ds.input_tokens is not None:
            tin = np.where(np.isnan(ds.input_tokens[:, j]), tin, ds.input_tokens[:, j])
        tout = np.full(n, table.default_output_tokens)
        if ds.responses is not None:
            resp = _text_tokens([r[j] for r in ds.responses])
            tout = np.where(np.isnan(resp), tout, resp)
        if ds.output_tokens is not None:
            tout = np.where(np.isnan(ds.output_tokens[:, j]), tout, ds.output_tokens[:, j])
        costs[rows, j] = (tin[rows] * pr[0] + tout[rows] * pr[1]) / 1e6
        estimated += int(rows.sum())
    if unpriced:
        warnings.warn(f"{ds.name}: no price in {table.source} for models {unpriced}; their costs are NaN",
                      stacklevel=2)
    meta = dict(ds.meta, cost_source=table.source, costs_from_prices=estimated)
    return replace(ds, costs=costs, meta=meta)
