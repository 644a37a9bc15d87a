"""What every decoder provides to the generation driver.

A decoder owns its models' caches and random generators for one request. The driver calls
`start(prompt_ids, sampling, seed)` once per request, then `step(seq, budget)` once per
round, where seq is the committed sequence so far (prompt + generated) and budget the number
of tokens still wanted. A step runs exactly one verifying target forward and returns the
round's committed tokens (at least one) with its statistics. The driver truncates at EOS,
stop strings and the budget.
"""

from __future__ import annotations

from typing import Protocol

from specbranch.config import SamplingParams
from specbranch.metrics import RoundStats


class Decoder(Protocol):
    """One decoding method bound to a model pair and a request."""

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        """Reset caches and generators for a new request."""

    def step(self, seq: list[int], budget: int) -> RoundStats:
        """Run one round on the committed sequence; return what it committed."""

    def busy_seconds(self) -> tuple[float, float]:
        """(target, draft) time spent in forwards since start."""

    def forwards(self) -> tuple[int, int]:
        """(target, draft) forward counts since start."""

    def close(self) -> None:
        """Release workers or other resources (no-op for in-process decoders)."""
