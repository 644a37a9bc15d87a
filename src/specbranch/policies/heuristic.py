"""`heuristic`: transformers' assisted-generation schedule with its confidence stop.

Source: Hugging Face transformers, `AssistedCandidateGenerator` ("heuristic" schedule of
`num_assistant_tokens`, plus `assistant_confidence_threshold`). Rule:
- the round's length grows by 2 after a round whose drafts were all accepted and shrinks by 1
  (to at least 1) otherwise;
- within a round, drafting stops at a position where the draft's top probability is below
  `threshold` (default 0.4, transformers' default).
"""

from __future__ import annotations

import torch

from specbranch.policies.base import GAMMA, Option, PolicyInfo, RoundFeedback


class HeuristicPolicy:
    """+2 / -1 length schedule and a max-probability stop."""

    name = "heuristic"

    def __init__(self, start: int, threshold: float) -> None:
        self.length = max(1, start)
        self.threshold = threshold

    def max_length(self) -> int:
        return self.length

    def keep(self, probs: torch.Tensor) -> list[bool]:
        return (probs.amax(-1) >= self.threshold).tolist()

    def observe(self, feedback: RoundFeedback) -> None:
        self.length = self.length + 2 if feedback.fully_accepted else max(1, self.length - 1)


INFO = PolicyInfo(
    "heuristic",
    "transformers' +2/-1 schedule with a confidence stop",
    HeuristicPolicy,
    (
        Option("start", int, GAMMA, "the first round's length"),
        Option("threshold", float, 0.4, "stop where the draft's top probability is below this"),
    ),
)
