"""`cost`: draft as long as drafting can run while the target verifies.

The cost ratio c = T_target_verify / T_draft_step is measured on the machine at start-up
(`specbranch.probe`); round(c) draft steps fit in one verification, so a longer draft would
make the target wait. The natural cap for the parallel methods (PEARL, SpecBranch), where
drafting overlaps verification; in SD it simply sets gamma = c.
"""

from __future__ import annotations

import torch

from specbranch.policies.base import RoundFeedback


class CostPolicy:
    """Draft `length` = round(c) tokens per round."""

    name = "cost"

    def __init__(self, length: int) -> None:
        self.length = max(1, length)

    def max_length(self) -> int:
        return self.length

    def keep(self, probs: torch.Tensor) -> list[bool]:
        return [True] * probs.shape[0]

    def observe(self, feedback: RoundFeedback) -> None:
        pass
