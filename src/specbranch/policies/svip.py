"""`svip`: stop drafting when the draft token's entropy bound signals likely rejection.

Source: Zhang et al., "Draft Model Knows When to Stop: A Self-Verification Length Policy for
Speculative Decoding" (SVIP, 2024). The acceptance rate of a draft token is bounded below by
a decreasing function of the draft distribution's entropy; SVIP stops drafting as soon as the
inference-time approximation of that bound, 1 - sqrt(beta * H(q)) (beta = 0.2), falls below a
fixed `threshold` (default 0.6; unlike AdaEDL it does not adapt). `cap` bounds a round.
"""

from __future__ import annotations

import torch

from specbranch.policies.base import CAP, Option, PolicyInfo, RoundFeedback, acceptance_lower_bound


class SVIPPolicy:
    """Stop at the first position whose entropy bound is below a fixed threshold."""

    name = "svip"

    def __init__(self, cap: int, threshold: float, beta: float) -> None:
        self.cap, self.threshold, self.beta = max(1, cap), threshold, beta

    def max_length(self) -> int:
        return self.cap

    def keep(self, probs: torch.Tensor) -> list[bool]:
        return (acceptance_lower_bound(probs, self.beta) >= self.threshold).tolist()

    def observe(self, feedback: RoundFeedback) -> None:
        pass


INFO = PolicyInfo(
    "svip",
    "entropy lower bound on acceptance, fixed threshold",
    SVIPPolicy,
    (
        Option("cap", int, CAP, "most tokens per round"),
        Option("threshold", float, 0.6, "stop where 1 - sqrt(beta * H) is below this"),
        Option("beta", float, 0.2, "entropy scale"),
    ),
)
