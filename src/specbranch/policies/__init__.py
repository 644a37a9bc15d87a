"""Draft-length policies, one module each, and the factory that builds one from a spec.

A spec is `NAME[:OPTION=VALUE,...]`, e.g. `adaedl`, `svip:threshold=0.5`, `fixed:gamma=6`.
Policies: fixed, heuristic, adaedl, svip, tapout, cost (see each module for its rule and
source). Every speculative method takes one (`SpeculativeConfig.draft_policy`); the parallel
methods run it on the draft side, under their own length cap.
"""

from __future__ import annotations

from specbranch.errors import SpecBranchError
from specbranch.policies.adaedl import AdaEDLPolicy
from specbranch.policies.base import DraftPolicy, RoundFeedback, acceptance_lower_bound, entropy
from specbranch.policies.cost import CostPolicy
from specbranch.policies.fixed import FixedPolicy
from specbranch.policies.heuristic import HeuristicPolicy
from specbranch.policies.svip import SVIPPolicy
from specbranch.policies.tapout import TapOutPolicy

POLICIES = ("fixed", "heuristic", "adaedl", "svip", "tapout", "cost")
OPTIONS = {
    "fixed": {"gamma": int},
    "cost": {"length": int},
    "heuristic": {"start": int, "threshold": float},
    "adaedl": {"cap": int, "beta": float, "start": float, "step": float},
    "svip": {"cap": int, "threshold": float, "beta": float},
    "tapout": {"cap": int},
}


def parse_policy(spec: str) -> tuple[str, dict]:
    """`NAME[:k=v,...]` -> (name, typed options), with clear errors."""
    name, _, rest = spec.partition(":")
    if name not in POLICIES:
        raise SpecBranchError(f"unknown draft policy {name!r}; choose from {', '.join(POLICIES)}")
    options: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        kind = OPTIONS[name].get(key.strip())
        if not eq or kind is None:
            allowed = ", ".join(OPTIONS[name]) or "none"
            raise SpecBranchError(f"draft policy {name!r}: bad option {item!r} (options: {allowed})")
        try:
            options[key.strip()] = kind(value)
        except ValueError:
            raise SpecBranchError(f"draft policy {name!r}: {key} must be a {kind.__name__}") from None
    for key, value in options.items():
        if (kind := OPTIONS[name][key]) is int and value < 1:
            raise SpecBranchError(f"draft policy {name!r}: {key} must be >= 1")
        if kind is float and not 0.0 <= value <= 1.0:
            raise SpecBranchError(f"draft policy {name!r}: {key} must be in [0, 1]")
    return name, options


def build_policy(spec: str, gamma: int, cap: int) -> DraftPolicy:
    """The policy a spec names. gamma: the configured draft length (fixed, heuristic's start);
    cap: the longest round (the measured cost length c for the parallel methods)."""
    name, o = parse_policy(spec)
    if name == "fixed":
        return FixedPolicy(o.get("gamma", gamma))
    if name == "cost":
        return CostPolicy(o.get("length", cap))
    if name == "heuristic":
        return HeuristicPolicy(o.get("start", gamma), o.get("threshold", 0.4))
    if name == "adaedl":
        return AdaEDLPolicy(o.get("cap", cap), o.get("beta", 0.2), o.get("start", 0.5), o.get("step", 0.02))
    if name == "svip":
        return SVIPPolicy(o.get("cap", cap), o.get("threshold", 0.6), o.get("beta", 0.2))
    arm_cap = o.get("cap", cap)
    return TapOutPolicy([HeuristicPolicy(gamma), AdaEDLPolicy(arm_cap), SVIPPolicy(arm_cap)])


__all__ = [
    "POLICIES",
    "DraftPolicy",
    "RoundFeedback",
    "acceptance_lower_bound",
    "build_policy",
    "entropy",
    "parse_policy",
]
