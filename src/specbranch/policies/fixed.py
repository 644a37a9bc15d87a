"""`fixed`: always draft gamma tokens (classic speculative decoding; Leviathan et al. 2023)."""

from __future__ import annotations

import torch

from specbranch.policies.base import GAMMA, Option, PolicyInfo, RoundFeedback


class FixedPolicy:
    """Draft exactly `gamma` tokens per round (fewer only at EOS or the token budget)."""

    name = "fixed"

    def __init__(self, gamma: int) -> None:
        self.gamma = gamma

    def max_length(self) -> int:
        return self.gamma

    def keep(self, probs: torch.Tensor) -> list[bool]:
        return [True] * probs.shape[0]

    def observe(self, feedback: RoundFeedback) -> None:
        pass


INFO = PolicyInfo(
    "fixed", "gamma tokens every round", FixedPolicy, (Option("gamma", int, GAMMA, "tokens per round"),)
)
