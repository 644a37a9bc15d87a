"""What every decoder provides to the generation driver.

A decoder owns its models' caches and random generators for one request. The driver calls
`start(prompt_ids, sampling, seed)` once per request, then `step(seq, budget)` once per
round, where seq is the committed sequence so far (prompt + generated) and budget the number
of tokens still wanted. A step runs exactly one verifying target forward and returns the
round's committed tokens (at least one) with its statistics. The driver truncates at EOS,
stop strings and the budget, then asks the decoder to `report` what only it knows.
"""

from __future__ import annotations

from typing import Protocol

from specbranch.config import SamplingParams
from specbranch.metrics import GenerationMetrics, RoundStats
from specbranch.sampling import make_generator


class Decoder(Protocol):
    """One decoding method bound to a model pair and a request."""

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        """Reset caches and generators for a new request."""

    def step(self, seq: list[int], budget: int) -> RoundStats:
        """Run one round on the committed sequence; return what it committed."""

    def report(self, metrics: GenerationMetrics) -> None:
        """Fill in the request's figures only the decoder knows: busy seconds of both sides, draft
        forwards, and for the parallel methods the measured cost ratio c and the branch length."""

    def alive(self) -> bool:
        """False once a worker process this decoder relies on has died (rebuild it then)."""

    def worker_pid(self) -> int | None:
        """The draft worker's process id (None: no worker)."""

    def close(self) -> None:
        """Release workers or other resources (no-op for in-process decoders)."""


class InProcessDecoder:
    """The `Decoder` methods of a decoder that runs wholly in the caller's process: always
    alive, no worker, nothing to release."""

    def alive(self) -> bool:
        return True

    def worker_pid(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class SerialDecoder(InProcessDecoder):
    """An in-process decoder with a target and a draft `CachedModel` (`self.target`,
    `self.draft`) run one after the other: a request starts with both caches reset and one
    generator per purpose; its report is their busy times and draft forwards."""

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        self.target.reset()
        self.draft.reset()
        self.sampling = sampling
        self.verify_gen = make_generator(seed, "verify")
        self.draft_gen = make_generator(seed, "draft")

    def report(self, metrics: GenerationMetrics) -> None:
        metrics.target_busy_seconds = self.target.busy_seconds
        metrics.draft_busy_seconds = self.draft.busy_seconds
        metrics.draft_forwards = self.draft.forwards
