"""PEARL: parallel speculative decoding with adaptive draft length (Liu et al., ICLR 2025).

Draft and target run at the same time (`specbranch.decoders.parallel`, one branch per round):

- *pre-verify*: when nothing is pending (after a rejection), the target checks the first
  token of the new block (rule 2/3 with one root, or rule 1/4) while the draft produces the
  rest of the block; a rejected first token throws the block away a round early;
- *post-verify*: when a block is pending, the target verifies it while the draft already
  drafts the next block from its end.

Draft length: it starts at `base` (the measured cost ratio c, or --max-draft-len), grows by one
after every round whose whole drafted path was accepted, up to 2 * base, and falls back to base
after any rejection.
"""

from __future__ import annotations


class PearlPolicy:
    """One branch, no confidence cut-off, block length adapting to acceptance."""

    k_max = 1
    epsilon = 0.0

    def __init__(self, base: int) -> None:
        self.base_length = max(1, base)
        self.length = self.base_length

    def reset(self) -> None:
        self.length = self.base_length

    def draft_length(self) -> int:
        return self.length

    def update(self, fully_accepted: bool) -> None:
        self.length = min(self.length + 1, 2 * self.base_length) if fully_accepted else self.base_length
