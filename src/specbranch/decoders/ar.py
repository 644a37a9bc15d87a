"""Autoregressive decoding of the target: the speed reference and the ground truth.

One round: plan the target forward over the uncached committed tail (the last committed token
at least), sample from the processed distribution (argmax at temperature 0), commit it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specbranch.backends.base import Backend, Feed, KVSequence
from specbranch.config import SamplingParams
from specbranch.decoders.base import PlanSteps, Request, SerialDecoder
from specbranch.metrics import TARGET, RoundStats
from specbranch.sampling import process_logits, sample


@dataclass
class ARProposal:
    """An AR round: the target forward only."""

    feed: Feed


class AutoregressiveDecoder(SerialDecoder):
    """Plain KV-cached sampling from the target."""

    def __init__(self, target: Backend) -> None:
        self.target = target

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> Request:
        return Request(prompt_ids, sampling, seed, KVSequence(self.target))

    def plan(self, request: Request, budget: int) -> PlanSteps:
        yield from ()  # no draft forward
        return ARProposal(request.target.linear_feed(request.seq, 1))

    def settle(self, request: Request, proposal: ARProposal, logits: torch.Tensor) -> RoundStats:
        p = process_logits(logits[0], request.sampling)  # [V]
        token = sample(p, request.verify_gen)
        request.seq.append(token)
        return RoundStats(committed=[token], origins=[TARGET])
