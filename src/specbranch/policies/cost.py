"""`cost`: draft as long as drafting can run while the target verifies.

The cost ratio c = T_target_verify / T_draft_step is measured on the machine at start-up
(`specbranch.probe`); round(c) draft steps fit in one verification, so a longer draft would
make the target wait. The natural cap for the parallel methods (PEARL, SpecBranch), where
drafting overlaps verification; in SD it simply sets gamma = c.
"""

from __future__ import annotations

from specbranch.policies.base import CAP, Option, PolicyInfo
from specbranch.policies.fixed import FixedPolicy


class CostPolicy(FixedPolicy):
    """Draft `length` = round(c) tokens per round (a fixed length, set by measurement)."""

    name = "cost"

    def __init__(self, length: int) -> None:
        super().__init__(max(1, length))


INFO = PolicyInfo(
    "cost", "the measured cost ratio c", CostPolicy, (Option("length", int, CAP, "tokens per round"),)
)
