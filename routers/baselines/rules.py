"""Hand-written routing rules from YAML (see configs/rules/example.yaml): ordered rules matching
keywords, a regex, prompt length or category; the first rule that matches picks the model, else
`default`. Quality is 1 for the chosen model and 0 elsewhere, so any lam keeps the rule's choice
(among the rest, `rank` orders the default first, then the cheapest).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from routers.baselines.base import Router
from routers.errors import ConfigError

CONDITIONS = ("keywords", "regex", "min_chars", "max_chars", "categories")
RULE_FIELDS = ("name", "model") + CONDITIONS


def validate_rules(spec: Any, source: str = "rules") -> dict:
    """Check a rules mapping; return it normalized. Errors name the rule and the field."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: expected a mapping with 'default' and 'rules', got {type(spec).__name__}")
    unknown = set(spec) - {"models", "default", "rules"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level field(s) {sorted(unknown)}; expected models, default, rules")
    default = spec.get("default")
    if not isinstance(default, str) or not default:
        raise ConfigError(f"{source}: field 'default' must name a model")
    rules = spec.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError(f"{source}: field 'rules' must be a list")
    out = []
    for i, r in enumerate(rules):
        where = f"{source}: rule {i}" + (f" ({r.get('name')!r})" if isinstance(r, dict) and r.get("name") else "")
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(r).__name__}")
        bad = set(r) - set(RULE_FIELDS)
        if bad:
            raise ConfigError(f"{where}: unknown field(s) {sorted(bad)}; allowed: {', '.join(RULE_FIELDS)}")
        if not isinstance(r.get("model"), str) or not r["model"]:
            raise ConfigError(f"{where}: field 'model' must name a model")
        if not any(k in r for k in CONDITIONS):
            raise ConfigError(f"{where}: no condition; give at least one of {', '.join(CONDITIONS)}")
        for k in ("keywords", "categories"):
            if k in r and (not isinstance(r[k], list) or not r[k] or not all(isinstance(x, str) and x for x in r[k])):
                raise ConfigError(f"{where}: field {k!r} must be a non-empty list of strings")
        if "regex" in r:
            if not isinstance(r["regex"], str):
                raise ConfigError(f"{where}: field 'regex' must be a string")
            try:
                re.compile(r["regex"])
            except re.error as e:
                raise ConfigError(f"{where}: field 'regex' is not a valid regular expression ({e})") from None
        for k in ("min_chars", "max_chars"):
            if k in r and (isinstance(r[k], bool) or not isinstance(r[k], int) or r[k] < 0):
                raise ConfigError(f"{where}: field {k!r} must be a non-negative integer")
        out.append({k: r[k] for k in RULE_FIELDS if k in r})
    models = spec.get("models")
    if models is None:
        models = list(dict.fromkeys([default] + [r["model"] for r in out]))
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConfigError(f"{source}: field 'models' must be a list of model names")
    for i, r in enumerate(out):
        if r["model"] not in models:
            raise ConfigError(f"{source}: rule {i} ({r.get('name', '')!r}): field 'model' {r['model']!r} "
                              f"is not in models {models}")
    if default not in models:
        raise ConfigError(f"{source}: field 'default' {default!r} is not in models {models}")
    return {"models": list(models), "default": default, "rules": out}


def rule_matches(rule: dict, prompt: str, category: str | None) -> bool:
    if "keywords" in rule and not any(k.lower() in prompt.lower() for k in rule["keywords"]):
        return False
    if "regex" in rule and not re.search(rule["regex"], prompt):
        return False
    if "min_chars" in rule and len(prompt) < rule["min_chars"]:
        return False
    if "max_chars" in rule and len(prompt) > rule["max_chars"]:
        return False
    if "categories" in rule and category not in rule["categories"]:
        return False
    return True


class RulesRouter(Router):
    """`RulesRouter(rules={...})` or `RulesRouter.from_yaml(path)`; fitting only records costs."""

    name = "rules"
    needs_fit = False

    def __init__(self, **params):
        spec = params.get("rules")
        if spec is None and params.get("config"):
            spec = self._read(params["config"])
        if spec is None:
            raise ConfigError("rules router: give rules={...} or config=<YAML path>")
        params["rules"] = validate_rules(spec, str(params.get("config") or "rules"))
        params.pop("config", None)
        params["models"] = params["rules"]["models"]
        super().__init__(**params)

    @staticmethod
    def _read(path) -> Any:
        try:
            return yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: rules file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RulesRouter":
        return cls(config=str(path))

    def fit(self, train, validation=None):
        missing = [m for m in self.params["rules"]["models"] if m not in train.models]
        if missing:
            raise ConfigError(f"rules router: model(s) {missing} are not in dataset {train.name} ({train.models})")
        super().fit(train.select_models(self.params["rules"]["models"]), validation)
        return self

    def choose(self, prompt: str, category: str | None = None) -> tuple[str, str | None]:
        """(model, name of the rule that matched or None for the default)."""
        spec = self.params["rules"]
        for i, r in enumerate(spec["rules"]):
            if rule_matches(r, prompt, category):
                return r["model"], r.get("name", f"rule-{i}")
        return spec["default"], None

    def predict_quality(self, prompts, categories=None):
        out = np.zeros((len(prompts), len(self.models)))
        d = self.models.index(self.params["rules"]["default"])
        for i, p in enumerate(prompts):
            out[i, d] = 0.5
            out[i, self.models.index(self.choose(p, None if categories is None else categories[i])[0])] = 1.0
        return out

    def route(self, prompts, lam=0.0, categories=None, quality=None, cost=None):
        q = self.predict_quality(prompts, categories) if quality is None else quality
        return np.argmax(q, axis=1)
