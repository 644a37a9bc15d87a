"""`adaedl`: early draft stopping on an entropy-based lower bound of acceptance, adaptive threshold.

Source: Agrawal, Jeon, Lee, "AdaEDL: Early Draft Stopping for Speculative Decoding of Large
Language Models via an Entropy-based Lower Bound on Token Acceptance Probability" (2024).
Rule: draft at the next position only while 1 - sqrt(beta * H(q)) >= lambda, with H the
entropy (nats) of the draft distribution there and beta = 0.2 (the usual constant).
lambda adapts online from observed acceptance (our reading of the paper's adaptive threshold,
stated here so it can be checked): after a round with a rejection, lambda += step (stop
sooner); after a round whose drafts were all accepted, lambda -= step (draft longer); lambda
stays in [0.05, 0.95]. `cap` bounds the length of a round.
"""

from __future__ import annotations

import torch

from specbranch.policies.base import CAP, Option, PolicyInfo, RoundFeedback, acceptance_lower_bound


class AdaEDLPolicy:
    """Stop when the acceptance lower bound falls below an adaptive lambda."""

    name = "adaedl"

    def __init__(self, cap: int, beta: float, start: float, step: float) -> None:
        self.cap, self.beta, self.threshold, self.step = max(1, cap), beta, start, step

    def max_length(self) -> int:
        return self.cap

    def keep(self, probs: torch.Tensor) -> list[bool]:
        return (acceptance_lower_bound(probs, self.beta) >= self.threshold).tolist()

    def observe(self, feedback: RoundFeedback) -> None:
        if feedback.drafted == 0:
            return
        delta = -self.step if feedback.fully_accepted else self.step
        self.threshold = min(0.95, max(0.05, self.threshold + delta))


INFO = PolicyInfo(
    "adaedl",
    "entropy lower bound on acceptance with an adaptive threshold",
    AdaEDLPolicy,
    (
        Option("cap", int, CAP, "most tokens per round"),
        Option("beta", float, 0.2, "entropy scale in 1 - sqrt(beta * H)"),
        Option("start", float, 0.5, "initial threshold lambda"),
        Option("step", float, 0.02, "change of lambda per round"),
    ),
)
