"""What a draft-length policy is, and the quantities the policies share.

A *draft-length policy* decides how long to draft, using only what is known before
verification: per round a cap (`max_length`), and token by token whether to draft at the next
position at all (`keep`, given the draft's distribution there). After verification it learns
from the round (`observe`). Policies change speed only: the verification rules make every
output exact whatever they decide.

Distributions passed to `keep` are the draft's *raw* softmax (temperature 1, no truncation),
so the entropy and confidence signals mean the same at temperature 0 and 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

GAMMA = "gamma"  # an option default: the run's configured draft length (--gamma)
CAP = "cap"  # an option default: the run's longest round (the measured cost length c)


@dataclass(frozen=True)
class RoundFeedback:
    """What the round just verified taught: drafted tokens checked, how many were accepted,
    tokens committed, and the round's wall time in seconds."""

    drafted: int
    accepted: int
    committed: int
    seconds: float

    @property
    def fully_accepted(self) -> bool:
        return self.accepted >= self.drafted


class DraftPolicy(Protocol):
    """A draft-length policy (see the module docstring)."""

    name: str

    def max_length(self) -> int:
        """Most tokens to draft this round."""

    def keep(self, probs: torch.Tensor) -> list[bool]:
        """probs: [m, V] draft distributions at m next positions -> draft at each of them?"""

    def observe(self, feedback: RoundFeedback) -> None:
        """Learn from the round just verified."""


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of each row: [m, V] -> [m]."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(-1)


def acceptance_lower_bound(probs: torch.Tensor, beta: float) -> torch.Tensor:
    """1 - sqrt(beta * H(q)): the entropy-based lower bound on a draft token's acceptance
    probability used by AdaEDL and SVIP; [m, V] -> [m]."""
    return 1.0 - (beta * entropy(probs)).sqrt()


@dataclass(frozen=True)
class Option:
    """One option of a policy spec (`NAME:key=value`).

    kind: int or float (ints must be >= 1, floats lie in [0, 1]); default: a value, or GAMMA /
    CAP for the run's draft length / cost length, filled in when the policy is built.
    """

    name: str
    kind: type
    default: int | float | str
    help: str


@dataclass(frozen=True)
class PolicyInfo:
    """A draft-length policy as the registry knows it: its name, a one-line rule, its options
    and how it is built (`make`, called with every option by name, defaults filled in)."""

    name: str
    rule: str
    make: Callable[..., DraftPolicy]
    options: tuple[Option, ...] = ()

    @property
    def needs_cost(self) -> bool:
        """Whether building it needs the measured cost length c (the cost probe)."""
        return any(option.default == CAP for option in self.options)


def build(info: PolicyInfo, given: dict, gamma: int, cap: int) -> DraftPolicy:
    """The policy `info` describes, with the `given` options and every other at its default
    (GAMMA -> gamma, CAP -> cap)."""
    run = {GAMMA: gamma, CAP: cap}
    values = {o.name: run[o.default] if o.default in (GAMMA, CAP) else o.default for o in info.options}
    return info.make(**(values | given))
