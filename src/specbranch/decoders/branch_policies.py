"""The two branch policies of the parallel round (`decoders/parallel.py`, `BranchPolicy`): how
PEARL and SpecBranch draft while the target verifies. They use only information from before
verification, so they change speed, never the output.

PEARL: parallel speculative decoding with adaptive draft length (Liu et al., ICLR 2025). Draft
and target run at the same time, one branch per round:

- *pre-verify*: when nothing is pending (after a rejection), the target checks the first
  token of the new block (rule 2/3 with one root, or rule 1/4) while the draft produces the
  rest of the block; a rejected first token throws the block away a round early;
- *post-verify*: when a block is pending, the target verifies it while the draft already
  drafts the next block from its end.

Its draft length starts at `base` (the measured cost ratio c, or --max-draft-len), grows by one
after every round whose whole drafted path was accepted, up to 2 * base, and falls back to base
after any rejection.

SpecBranch: branch-parallel speculative decoding (ICLR 2026). What it adds to PEARL's round is
the hedge at the branch point b and where branches stop (the draft side: `decoders/drafter.py`):

- k = max(1, floor(k_max * (1 - max q_b))) roots at b (draft top-k, rule 3; or k samples,
  rule 4), so a confident draft spends nothing on hedging and an unsure one covers the
  likely corrections;
- all branches grow together in one batched tree forward per step, sharing the prefix KV;
- a branch stops at its first position with draft confidence below epsilon (likely
  rejection: better to branch there next round than to draft on) or at `length` tokens,
  the number of draft steps that fit in one target forward (the measured cost ratio c).

After a hit the whole surviving branch becomes the next pending block U (with H-RAD, the part
its keeper keeps). On a shared device SpecBranch's branches become a token tree instead
(`decoders/tree.py`).
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


class SpecBranchPolicy:
    """Up to k_max branches, cut at confidence epsilon, at most `length` tokens each."""

    def __init__(self, k_max: int, epsilon: float, length: int) -> None:
        self.k_max, self.epsilon, self.base_length = k_max, float(epsilon), max(1, length)

    def reset(self) -> None:
        pass

    def draft_length(self) -> int:
        return self.base_length

    def update(self, fully_accepted: bool) -> None:
        pass
