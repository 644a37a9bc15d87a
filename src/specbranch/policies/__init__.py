"""Draft-length policies, one module each, and the registry that parses and builds them.

A spec is `NAME[:OPTION=VALUE,...]`, e.g. `adaedl`, `svip:threshold=0.5`, `fixed:gamma=6`.
Each policy module declares an `INFO` (`PolicyInfo`: name, rule, options with defaults and
help, how it is built); `REGISTRY` below lists them, and the CLI help, the benchmark variants
and the decoders all read it. Adding a policy is one module plus one line in `REGISTRY`.
Every speculative method takes one (`SpeculativeConfig.draft_policy`); the parallel methods
run it on the draft side, under their own length cap.
"""

from __future__ import annotations

from specbranch.errors import SpecBranchError
from specbranch.policies import adaedl, cost, fixed, heuristic, svip, tapout
from specbranch.policies.base import (
    DraftPolicy,
    PolicyInfo,
    RoundFeedback,
    acceptance_lower_bound,
    build,
    entropy,
)
from specbranch.specs import split_spec

REGISTRY: dict[str, PolicyInfo] = {
    info.name: info
    for info in (fixed.INFO, heuristic.INFO, adaedl.INFO, svip.INFO, tapout.INFO, cost.INFO)
}
POLICIES = tuple(REGISTRY)


def policy_info(name: str) -> PolicyInfo:
    """The registry entry of a policy name, or a clear error."""
    if name not in REGISTRY:
        raise SpecBranchError(f"unknown draft policy {name!r}; choose from {', '.join(POLICIES)}")
    return REGISTRY[name]


def parse_policy(spec: str) -> tuple[str, dict]:
    """`NAME[:k=v,...]` -> (name, typed options), with clear errors."""
    name, items = split_spec(spec, "draft policy")
    info = policy_info(name)
    kinds = {option.name: option.kind for option in info.options}
    options: dict = {}
    for key, value in items:
        kind = kinds.get(key)
        if kind is None:
            allowed = ", ".join(kinds) or "none"
            raise SpecBranchError(f"draft policy {name!r}: bad option {key!r} (options: {allowed})")
        try:
            options[key] = kind(value)
        except ValueError:
            raise SpecBranchError(f"draft policy {name!r}: {key} must be a {kind.__name__}") from None
        if kind is int and options[key] < 1:
            raise SpecBranchError(f"draft policy {name!r}: {key} must be >= 1")
        if kind is float and not 0.0 <= options[key] <= 1.0:
            raise SpecBranchError(f"draft policy {name!r}: {key} must be in [0, 1]")
    return name, options


def build_policy(spec: str, gamma: int, cap: int) -> DraftPolicy:
    """The policy a spec names. gamma: the configured draft length (fixed, heuristic's start);
    cap: the longest round (the measured cost length c for the parallel methods)."""
    name, options = parse_policy(spec)
    return build(REGISTRY[name], options, gamma, cap)


def needs_cost(spec: str | None) -> bool:
    """Whether the policy a spec names (None: `fixed`) needs the measured cost length c."""
    return spec is not None and policy_info(split_spec(spec, "draft policy")[0]).needs_cost


def describe() -> str:
    """One line per policy for --help: name, rule and options."""
    return "; ".join(
        f"{info.name} ({info.rule}; options: {', '.join(o.name for o in info.options)})"
        for info in REGISTRY.values()
    )


__all__ = [
    "POLICIES",
    "REGISTRY",
    "DraftPolicy",
    "PolicyInfo",
    "RoundFeedback",
    "acceptance_lower_bound",
    "build_policy",
    "describe",
    "entropy",
    "needs_cost",
    "parse_policy",
    "policy_info",
]
