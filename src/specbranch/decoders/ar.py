"""Autoregressive decoding of the target: the speed reference and the ground truth.

Loop: one target forward per token on the KV cache, sample from the processed distribution
(argmax at temperature 0), append.
"""

from __future__ import annotations

from specbranch.config import SamplingParams
from specbranch.decoders.base import InProcessDecoder
from specbranch.metrics import TARGET, GenerationMetrics, RoundStats
from specbranch.runner import CachedModel
from specbranch.sampling import make_generator, process_logits, sample


class AutoregressiveDecoder(InProcessDecoder):
    """Plain KV-cached sampling from the target."""

    def __init__(self, target: CachedModel) -> None:
        self.target = target

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        self.target.reset()
        self.sampling = sampling
        self.generator = make_generator(seed, "verify")

    def step(self, seq: list[int], budget: int) -> RoundStats:
        p = process_logits(self.target.logits_for(seq, 1)[0], self.sampling)  # [V]
        return RoundStats(committed=[sample(p, self.generator)], origins=[TARGET])

    def report(self, metrics: GenerationMetrics) -> None:
        metrics.target_busy_seconds = self.target.busy_seconds
