"""SpecBranch: branch-parallel speculative decoding (ICLR 2026).

The round loop is shared with PEARL (`specbranch.decoders.parallel`); what SpecBranch adds is
the hedge at the branch point b and where branches stop (`specbranch.decoders.drafter`):

- k = max(1, floor(k_max * (1 - max q_b))) roots at b (draft top-k, rule 3; or k samples,
  rule 4), so a confident draft spends nothing on hedging and an unsure one covers the
  likely corrections;
- all branches grow together in one batched tree forward per step, sharing the prefix KV;
- a branch stops at its first position with draft confidence below epsilon (likely
  rejection: better to branch there next round than to draft on) or at `length` tokens,
  the number of draft steps that fit in one target forward (the measured cost ratio c).

After a hit the whole surviving branch becomes the next pending block U.
"""

from __future__ import annotations


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
