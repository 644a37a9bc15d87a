"""`tapout`: a UCB1 bandit that picks a parameter-free policy for each round.

Source: Sridhar et al., "TapOut: A Bandit-Based Approach to Dynamic Speculative Decoding"
(2025). Rule: the arms are other policies (heuristic, adaedl, svip, each with its defaults); every round the
arm with the highest UCB1 score  mean_reward + sqrt(2 ln t / n_arm)  drafts (each arm is tried
once first). The reward of a round is its committed tokens per second of wall time, divided by
the best rate seen so far so rewards stay in [0, 1]. Only the arm that drafted learns from the
round (`observe`).
"""

from __future__ import annotations

import math

import torch

from specbranch.policies import adaedl, heuristic, svip
from specbranch.policies.base import CAP, GAMMA, DraftPolicy, Option, PolicyInfo, RoundFeedback, build


class TapOutPolicy:
    """UCB1 over arm policies; `pulls` and `rewards` are per arm."""

    name = "tapout"

    def __init__(self, arms: list[DraftPolicy]) -> None:
        self.arms = arms
        self.pulls = [0] * len(arms)
        self.rewards = [0.0] * len(arms)
        self.best_rate = 0.0
        self.current = 0

    def _choose(self) -> int:
        for i, n in enumerate(self.pulls):
            if n == 0:
                return i
        total = sum(self.pulls)
        scores = [
            self.rewards[i] / n + math.sqrt(2 * math.log(total) / n) for i, n in enumerate(self.pulls)
        ]
        return max(range(len(self.arms)), key=scores.__getitem__)

    def max_length(self) -> int:
        self.current = self._choose()
        return self.arms[self.current].max_length()

    def keep(self, probs: torch.Tensor) -> list[bool]:
        return self.arms[self.current].keep(probs)

    def observe(self, feedback: RoundFeedback) -> None:
        rate = feedback.committed / max(feedback.seconds, 1e-9)
        self.best_rate = max(self.best_rate, rate)
        self.pulls[self.current] += 1
        self.rewards[self.current] += rate / self.best_rate if self.best_rate else 0.0
        self.arms[self.current].observe(feedback)


def _make(cap: int, start: int) -> TapOutPolicy:
    """The three arms with their registry defaults, under one cap."""
    return TapOutPolicy([build(arm.INFO, {}, start, cap) for arm in (heuristic, adaedl, svip)])


INFO = PolicyInfo(
    "tapout",
    "UCB1 bandit over heuristic/adaedl/svip",
    _make,
    (
        Option("cap", int, CAP, "the arms' cap"),
        Option("start", int, GAMMA, "the heuristic arm's first length"),
    ),
)
