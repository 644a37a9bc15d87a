"""Configuration dataclasses shared by the library, the CLI, the benchmark and the server.

Terms:
- *sampling parameters* define the processed next-token distribution (see `sampling.py`) that
  draft and target both use; the lossless guarantee is with respect to the processed target
  distribution.
- *generation config* adds what ends a generation (token budget, stop strings) and the seed of
  the per-request random generators.
- *speculative config* holds the knobs of the speculative methods; they change speed only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from specbranch.errors import SpecBranchError

DraftSampling = Literal["greedy", "sample"]


@dataclass(frozen=True)
class SamplingParams:
    """How logits become the next-token distribution.

    temperature: 0 means greedy (the distribution is one-hot on the argmax).
    top_k: keep the k most likely tokens (0 = off).
    top_p: keep the smallest set of most likely tokens whose mass reaches top_p (1.0 = off).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, int | float) or math.isnan(self.temperature):
            raise SpecBranchError(f"temperature must be a number, got {self.temperature!r}")
        if self.temperature < 0:
            raise SpecBranchError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise SpecBranchError(f"top_k must be a whole number >= 0 (0 = off), got {self.top_k!r}")
        if not isinstance(self.top_p, int | float) or not (0.0 < self.top_p <= 1.0):
            raise SpecBranchError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        """True when the processed distribution is one-hot on the argmax."""
        return self.temperature == 0 or self.top_k == 1


@dataclass(frozen=True)
class SpeculativeConfig:
    """Knobs of the speculative methods (speed only; never the output distribution).

    gamma: draft length per round for SD (and the initial block for PEARL).
    draft_sampling: "sample" drafts x ~ q and verifies with rule 1 (needs q rows);
        "greedy" drafts argmax q and verifies with rule 2 (needs only token ids).
    draft_policy: a draft-length policy spec (`specbranch.policies`, e.g. "adaedl" or
        "svip:threshold=0.5"); None = the method's own: fixed gamma for SD, the PEARL schedule,
        the measured cost length c for SpecBranch.
    """

    gamma: int = 4
    draft_sampling: DraftSampling = "sample"
    draft_policy: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.gamma, int) or self.gamma < 1:
            raise SpecBranchError(f"gamma (draft length) must be a whole number >= 1, got {self.gamma!r}")
        if self.draft_sampling not in ("greedy", "sample"):
            raise SpecBranchError(f"draft_sampling must be 'greedy' or 'sample', got {self.draft_sampling!r}")
        if self.draft_policy is not None:
            from specbranch.policies import parse_policy

            parse_policy(self.draft_policy)


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate and when to stop.

    max_new_tokens: hard cap on generated tokens.
    seed: seeds the per-request generators (verification and draft sampling use separate ones).
    stop: strings that end the generation; the returned text ends before the stop string.
    ignore_eos: keep generating past EOS (benchmarks use it for fixed-length runs).
    """

    max_new_tokens: int = 128
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise SpecBranchError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.seed, int):
            raise SpecBranchError(f"seed must be an integer, got {self.seed!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise SpecBranchError("stop strings must be non-empty strings")


@dataclass(frozen=True)
class ParallelConfig:
    """Options of the parallel methods (PEARL, SpecBranch); speed only, never the output.

    inline: run draft and target one after the other in this process (the reference; same
        tokens as the two-process mode for the same seed and draft lengths).
    k_max: most branches at a branch point; epsilon: draft confidence below which a branch
        stops (SpecBranch only).
    max_draft_len: branch length (PEARL: initial block); None = the measured cost ratio c.
    draft_threads / target_threads: torch threads of the draft worker and of the caller (the
        target side); None = half the cores each (one each on a 2-core machine).
    draft_device: device of the draft worker (None = where the draft model is).
    master_addr / master_port: rendezvous of the two processes (port 0 = any free port).
    worker_timeout: seconds a reply from the draft worker may take before it counts as hung.
    hrad: H-RAD predictor (SpecBranch only): a predictor file, "auto" (the default: the one
        shipped for a built-in pair, off for other pairs) or None / "none" (off: keep branches
        cut at epsilon). A predictor acts only in the decoding modes it was trained for
        (`PredictorMeta.modes`; the shipped one: greedy, see benchmarks/RESULTS.md).
    """

    inline: bool = False
    k_max: int = 4
    epsilon: float = 0.2
    max_draft_len: int | None = None
    draft_threads: int | None = None
    target_threads: int | None = None
    draft_device: str | None = None
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    worker_timeout: float = 60.0
    hrad: str | None = "auto"

    def __post_init__(self) -> None:
        if self.hrad is not None and (not isinstance(self.hrad, str) or not self.hrad):
            raise SpecBranchError(f"hrad must be a predictor file, 'auto' or 'none', got {self.hrad!r}")
        if not isinstance(self.k_max, int) or self.k_max < 1:
            raise SpecBranchError(f"k_max must be a whole number >= 1, got {self.k_max!r}")
        if not isinstance(self.epsilon, int | float) or not 0.0 <= self.epsilon < 1.0:
            raise SpecBranchError(f"epsilon must be in [0, 1), got {self.epsilon!r}")
        for name in ("max_draft_len", "draft_threads", "target_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SpecBranchError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.worker_timeout, int | float) or self.worker_timeout <= 0:
            raise SpecBranchError(f"worker_timeout must be > 0 seconds, got {self.worker_timeout!r}")
        if not isinstance(self.master_port, int) or not 0 <= self.master_port < 65536:
            raise SpecBranchError(f"master_port must be in [0, 65535], got {self.master_port!r}")
