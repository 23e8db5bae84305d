"""Compliance rules: which workers a tenant may reach, and what one request may cost.

    rules:
      - name: eu-data                 # named in the decision log when it excludes a worker
        tenants: [acme]               # "*" or omitted: every tenant (per key: give the key its own tenant)
        allow_workers: [mistral-small-3.1, gpt-4o]   # only these (optional)
        deny_workers: [gpt-4o]                        # never these (optional)
        allow_tags: {region: [eu]}    # a worker must match every listed tag (optional)
        deny_tags: {provider: [openai], open_weights: [false]}   # any match denies (optional)
        max_cost_per_request: 0.01    # dollars, over all worker calls of one request (optional)

A worker is eligible for a tenant when no rule that applies to the tenant excludes it. A denied
worker is never called, not even as a fallback. The budget is checked before each call with the
call's worst case (estimated prompt tokens x input price + max_tokens x output price).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from routers.errors import ConfigError
from routers.yamlfile import read_yaml

RULE_KEYS = {"name", "tenants", "allow_workers", "deny_workers", "allow_tags", "deny_tags",
             "max_cost_per_request", "description"}


@dataclass
class Rule:
    name: str
    tenants: list[str] | None = None          # None: all tenants
    allow_workers: list[str] | None = None
    deny_workers: list[str] = field(default_factory=list)
    allow_tags: dict[str, list[Any]] = field(default_factory=dict)
    deny_tags: dict[str, list[Any]] = field(default_factory=dict)
    max_cost_per_request: float | None = None

    def applies(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def excludes(self, worker: str, tags: dict[str, Any]) -> str | None:
        """Why this rule excludes `worker`, or None."""
        if worker in self.deny_workers:
            return "deny_workers"
        if self.allow_workers is not None and worker not in self.allow_workers:
            return "allow_workers"
        for k, vals in self.deny_tags.items():
            if k in tags and tags[k] in vals:
                return f"deny_tags.{k}"
        for k, vals in self.allow_tags.items():
            if tags.get(k) not in vals:
                return f"allow_tags.{k}"
        return None


class RuleSet:
    """The rules of one server; `for_tenant` gives what a request needs."""

    def __init__(self, rules: list[Rule] | None = None):
        self.rules = list(rules or [])

    def for_tenant(self, tenant: str) -> "TenantRules":
        return TenantRules(tenant, [r for r in self.rules if r.applies(tenant)])


@dataclass
class TenantRules:
    tenant: str
    rules: list[Rule]

    def excluded_by(self, worker: str, tags: dict[str, Any]) -> str | None:
        """'<rule name> (<clause>)' of the first rule excluding `worker`, or None."""
        for r in self.rules:
            why = r.excludes(worker, tags)
            if why:
                return f"{r.name} ({why})"
        return None

    @property
    def max_cost(self) -> tuple[float, str] | None:
        caps = [(r.max_cost_per_request, r.name) for r in self.rules if r.max_cost_per_request is not None]
        return min(caps) if caps else None


def _str_list(v: Any, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(f"{where}: expected a list of names, got {v!r}")
    return list(v)


def _tags(v: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a mapping tag -> list of values, got {v!r}")
    return {str(k): list(x) if isinstance(x, list) else [x] for k, x in v.items()}


def parse_rules(raw: Any, src: str = "<rules>", workers: list[str] | None = None) -> RuleSet:
    """Validate a rules document; with `workers`, names that no worker has are an error (typos
    would otherwise silently allow or deny nothing)."""
    if raw is None:
        return RuleSet([])
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise ConfigError(f"{src}: expected a mapping with a 'rules' list")
    extra = set(raw) - {"rules", "description"}
    if extra:
        raise ConfigError(f"{src}: unknown top-level field {sorted(extra)[0]!r} (allowed: rules, description)")
    out, names = [], set()
    for i, r in enumerate(raw["rules"]):
        where = f"{src}: rules[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: expected a mapping, got {r!r}")
        bad = sorted(set(r) - RULE_KEYS)
        if bad:
            raise ConfigError(f"{where}.{bad[0]}: unknown field (allowed: {', '.join(sorted(RULE_KEYS))})")
        name = r.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: required (a non-empty string, named in the decision log)")
        if name in names:
            raise ConfigError(f"{where}.name: {name!r} is used twice")
        names.add(name)
        tenants = r.get("tenants")
        tenants = None if tenants in (None, "*", ["*"]) else _str_list(tenants, f"{where}.tenants")
        cap = r.get("max_cost_per_request")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap < 0):
            raise ConfigError(f"{where}.max_cost_per_request: expected dollars >= 0, got {cap!r}")
        rule = Rule(name=name, tenants=tenants,
                    allow_workers=None if r.get("allow_workers") is None
                    else _str_list(r["allow_workers"], f"{where}.allow_workers"),
                    deny_workers=_str_list(r.get("deny_workers", []), f"{where}.deny_workers"),
                    allow_tags=_tags(r.get("allow_tags", {}), f"{where}.allow_tags"),
                    deny_tags=_tags(r.get("deny_tags", {}), f"{where}.deny_tags"),
                    max_cost_per_request=None if cap is None else float(cap))
        if workers is not None:
            for key in ("allow_workers", "deny_workers"):
                unknown = [w for w in (getattr(rule, key) or []) if w not in workers]
                if unknown:
                    raise ConfigError(f"{where}.{key}: {unknown[0]!r} is not a worker of the pool "
                                      f"(pool has: {', '.join(workers)})")
        out.append(rule)
    return RuleSet(out)


def load_rules(path: str | Path | None, workers: list[str] | None = None) -> RuleSet:
    if path is None:
        return RuleSet([])
    return parse_rules(read_yaml(path, "rules file"), str(path), workers)
