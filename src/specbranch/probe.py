"""The cost ratio c = T_target_verify / T_draft_step, measured on the actual hardware.

Parallel methods draft while the target verifies, so a branch should be about as long as the
number of draft steps that fit in one target forward: c. `forward_seconds` times a model's
forward over a few new tokens after a short context (a warm-up run excluded, median of the rest),
on dummy token ids; the caches are reset afterwards.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from specbranch.runner import CachedModel

VERIFY_TOKENS = 4  # a typical verification block (pending tokens + branch point)
MAX_DRAFT_LEN = 32


def forward_seconds(runner: CachedModel, new_tokens: int, context: int = 32, repeats: int = 3) -> float:
    """Median wall time of one forward over `new_tokens` tokens after `context` cached tokens."""
    seq = [(7 * i + 3) % runner.vocab_size for i in range(context + new_tokens)]
    runner.reset()
    runner.logits_for(seq[:context], 1)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        runner.logits_for(seq, new_tokens)
        times.append(time.perf_counter() - start)
    runner.reset()
    return statistics.median(times[1:])


@dataclass(frozen=True)
class CostRatio:
    """Measured forward times; `ratio` is c, `draft_length` the branch length it allows."""

    target_seconds: float
    draft_seconds: float

    @property
    def ratio(self) -> float:
        return self.target_seconds / max(self.draft_seconds, 1e-9)

    @property
    def draft_length(self) -> int:
        """Draft steps that fit in one target verification: round(c), within [1, MAX_DRAFT_LEN]."""
        return max(1, min(MAX_DRAFT_LEN, round(self.ratio)))
