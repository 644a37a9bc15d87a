"""Forward times measured on the actual hardware: the cost ratio c and the cost curves.

Parallel methods draft while the target verifies, so a branch should be about as long as the
number of draft steps that fit in one target forward: c = T_target_verify / T_draft_step.
`forward_seconds` times a model's forward over a few new tokens after a short context (a
warm-up run excluded, median of the rest), on dummy token ids; the caches are reset afterwards.

Tree execution and the execution choice need more than one ratio: `measure_curve` times a
forward at several widths (`specbranch.costs.CostCurve`). Which placement to measure, and the
cache that keeps the result per machine and model pair, are `specbranch.runtime.placement`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from specbranch.backends.base import KVSequence
from specbranch.costs import CostCurve

VERIFY_TOKENS = 4  # a typical verification block (pending tokens + branch point)
MAX_DRAFT_LEN = 32


def forward_seconds(runner: KVSequence, new_tokens: int, context: int = 32, repeats: int = 3) -> float:
    """Median wall time of one forward over `new_tokens` tokens after `context` cached tokens."""
    seq = [(7 * i + 3) % runner.vocab_size for i in range(context + new_tokens)]
    return _median_seconds(runner, seq[:context], lambda: runner.logits_for(seq, new_tokens), repeats)


def _median_seconds(
    runner: KVSequence, context: list[int], forward: Callable[[], object], repeats: int
) -> float:
    """Median wall time of `forward` over `repeats` calls after a warm-up one, each with exactly
    `context` in the cache; the cache is left empty."""
    runner.reset()
    runner.logits_for(context, 1)
    times = []
    for _ in range(repeats + 1):
        runner.crop(len(context))
        start = time.perf_counter()
        forward()
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


# The cost curves (`specbranch.costs`): new tokens per target forward, and tree-level widths of
# the draft, at which the probe measures.
TARGET_SIZES = (1, 2, 4, 8, 16, 32, 64)
DRAFT_WIDTHS = (1, 2, 4, 8, 16)
SHARED_SIZES = (1, 2, 4, 8, 16, 32)  # the parallel mode verifies a branch, not a tree
PROBE_CONTEXT = 64  # cached tokens before the measured ones: a short prompt


def level_seconds(runner: KVSequence, width: int, repeats: int = 2) -> float:
    """Median wall time of one forward over `width` new tokens after PROBE_CONTEXT cached ones,
    each attending the context (a tree level, or a verification's worth of positions)."""
    context = [(7 * i + 3) % runner.vocab_size for i in range(PROBE_CONTEXT)]
    tokens = [(11 * i + 5) % runner.vocab_size for i in range(width)]
    level = lambda: runner.grow(tokens, [-1] * width)  # noqa: E731
    return _median_seconds(runner, context, level, repeats)


def measure_curve(runner: KVSequence, sizes: tuple[int, ...], threads: int | None = None) -> CostCurve:
    """The cost curve of `runner` at `sizes` new tokens, on `threads` torch threads (None: as set)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return CostCurve(tuple((n, level_seconds(runner, n)) for n in sizes))
    finally:
        torch.set_num_threads(before)
