"""What every decoder provides to the generation driver, and the serial methods' round.

A decoder holds models (`backends`), budgets and policies; everything about one generation
lives in its `Request`: the KV sequences, the random generators, the committed sequence, what
the request has taught (calibration, lookup rates, the overhead estimate) and its counters.
The driver calls `start(prompt_ids, sampling, seed)` once per request (a new `Request`), then
`step(request, budget)` once per round, budget the tokens still wanted; each round runs exactly
one verifying target forward, appends its committed tokens (at least one) to `request.seq`,
and returns them with its statistics. The driver truncates at EOS, stop strings and the
budget, then asks the decoder to `report` what only it knows.

The serial methods (ar, sd, lookup, serial SpecBranch) split a round in three (`RoundDecoder`):

  1. `plan(request, budget) -> PlanSteps`: everything before verification (lookup, drafting,
     the tree's shape) and the target feed the round needs (its tokens, tree and rows). A plan
     is a generator: it yields the feed of each draft forward it needs, is sent back that
     feed's logits, and returns the `Proposal`. The caller runs the draft forwards: alone
     (`plan_alone`), or one forward over several requests' feeds (`engine.run_rounds` runs
     their plans in lockstep);
  2. the target forward, run by the caller (`run_round`: this request alone; `engine.run_rounds`:
     one forward over several requests' feeds);
  3. `settle(request, proposal, logits) -> RoundStats`: verify, commit, keep the accepted KV,
     learn.

Requests share nothing but the decoder's models, budgets and policies, so two of them can be
planned and settled interleaved.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Protocol

import torch

from specbranch.backends.base import Feed, KVSequence
from specbranch.config import SamplingParams
from specbranch.metrics import GenerationMetrics, RoundStats
from specbranch.sampling import make_generator


@dataclass
class Request:
    """One generation in flight (module docstring): `seq` the committed tokens (prompt, then
    every round's), `target` / `draft` its KV sequences, one generator per purpose on the device
    whose rows it draws from (verification: the target's; drafting: the draft's); `mates`, how
    many requests shared its last round's target forward (`engine.run_rounds`; 0 alone), and
    `drafting_mates`, how many of them ran draft forwards on its draft's backend (which its own
    draft levels share; while a round is planned, how many rode in its last draft forward:
    `engine._plan_together`). The tree controller prices its rounds beside them (ALGORITHM.md,
    "Batched rounds")."""

    prompt_ids: list[int]
    sampling: SamplingParams
    seed: int
    target: KVSequence
    draft: KVSequence | None = None
    seq: list[int] = field(init=False)
    mates: int = field(init=False, default=0)
    drafting_mates: int = field(init=False, default=0)
    verify_gen: torch.Generator = field(init=False)
    draft_gen: torch.Generator | None = field(init=False)

    def __post_init__(self) -> None:
        self.seq = list(self.prompt_ids)
        self.verify_gen = make_generator(self.seed, "verify", self.target.device)
        self.draft_gen = make_generator(self.seed, "draft", self.draft.device) if self.draft else None


class Decoder(Protocol):
    """One decoding method bound to its models.

    plans_rounds: its rounds split in plan, target forward and settle (`RoundDecoder`), so
    several requests' rounds can share one target forward (`Engine.advance`).
    """

    plans_rounds: bool

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> Request:
        """A new request: fresh caches and generators."""

    def step(self, request: Request, budget: int) -> RoundStats:
        """Run one round of the request; return what it committed."""

    def report(self, request: Request, metrics: GenerationMetrics) -> None:
        """Fill in the request's figures only the decoder knows: busy seconds of both sides, draft
        forwards, and for the parallel methods the measured cost ratio c and the branch length."""

    def alive(self) -> bool:
        """False once a worker process this decoder relies on has died (rebuild it then)."""

    def worker_pid(self) -> int | None:
        """The draft worker's process id (None: no worker)."""

    def close(self) -> None:
        """Release workers or other resources (no-op for in-process decoders)."""


class Proposal(Protocol):
    """A serial round between plan and settle: at least the target feed it needs."""

    feed: Feed


# A round's plan as it runs (module docstring): it yields draft feeds, is sent their logits
# ([rows, V] each) and returns the proposal.
PlanSteps = Generator[Feed, torch.Tensor, Proposal]


class RoundDecoder(Protocol):
    """A serial method's round in three steps (module docstring)."""

    def plan(self, request: Request, budget: int) -> PlanSteps: ...

    def settle(self, request: Request, proposal: Proposal, logits: torch.Tensor) -> RoundStats: ...


def plan_alone(steps: PlanSteps) -> Proposal:
    """Run a plan, each of its draft forwards alone; the proposal."""
    logits = None
    while True:
        try:
            feed = steps.send(logits)
        except StopIteration as done:
            return done.value
        logits = feed.seq.backend.forward([feed])[0]


def run_round(decoder: RoundDecoder, request: Request, budget: int) -> RoundStats:
    """One round of one request: plan, the target forward, settle."""
    proposal = plan_alone(decoder.plan(request, budget))
    logits = request.target.backend.forward([proposal.feed])[0]
    return decoder.settle(request, proposal, logits)


class PlanClock:
    """A plan's own wall time: since it began, less what other requests' plans took while it
    waited for a draft forward it shared with them (plans run in lockstep, `engine.run_rounds`);
    the shared forward itself counts whole, as the target's does in `own_seconds`."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.elsewhere = 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.started - self.elsewhere

    def forward(self, feed: Feed) -> Generator[Feed, torch.Tensor, torch.Tensor]:
        """A draft forward of the plan (`logits = yield from clock.forward(feed)`): the feed's
        logits [rows, V], whoever ran it."""
        paused = time.perf_counter()
        logits = yield feed
        self.elsewhere += max(0.0, time.perf_counter() - paused - feed.seq.last_feed[1])
        return logits


def own_seconds(planned: float, request: Request, settle_started: float) -> float:
    """A round's own wall time: its planning (`planned` seconds, `PlanClock`), its target
    forward (the whole forward's, when requests share one) and its settling so far, not what
    other requests' rounds took between its plan and its settle."""
    return planned + request.target.last_feed[1] + time.perf_counter() - settle_started


def room(request: Request, budget: int, max_length: int) -> int:
    """The most tokens a round may propose: the target emits one token beyond them, and no
    position may pass the context window."""
    return max(0, min(budget - 1, max_length - len(request.seq) - 1))


class InProcessDecoder:
    """The `Decoder` methods of a decoder that runs wholly in the caller's process: always
    alive, no worker, nothing to release."""

    plans_rounds = False

    def alive(self) -> bool:
        return True

    def worker_pid(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class SerialDecoder(InProcessDecoder):
    """A serial method's step (`run_round`) and report: the busy time of both sides and the
    draft's forwards."""

    plans_rounds = True

    def step(self, request: Request, budget: int) -> RoundStats:
        return run_round(self, request, budget)

    def report(self, request: Request, metrics: GenerationMetrics) -> None:
        metrics.backend = request.target.backend.name
        metrics.target_busy_seconds = request.target.busy_seconds
        if request.draft is not None:
            metrics.draft_busy_seconds = request.draft.busy_seconds
            metrics.draft_forwards = request.draft.forwards
