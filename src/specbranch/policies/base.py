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

from dataclasses import dataclass
from typing import Protocol

import torch


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
