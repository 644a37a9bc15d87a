"""What crosses between the target side and the draft side, and the line that carries it.

Terms (ALGORITHM.md): X = committed tokens, U = pending tokens (drafted, not yet verified),
b = the branch point right after X + U. Per request the target sends one `DraftRequest`; per
round it sends a `Decision` and the draft answers with a `BranchProposal`. A `DraftLink` carries them:
`InlineLink` (the draft in the caller's process) or `WorkerLink` (a draft worker process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from specbranch.config import SamplingParams


@dataclass
class DraftRequest:
    """Per-request settings the draft needs (sent once, at the start of a request).

    sampled: draft by sampling (x ~ q; the target needs q rows for rules 1 and 4) rather than
        deterministically (argmax q, top-k roots; rules 2 and 3).
    k_max: most branches at a branch point; epsilon: confidence below which a branch stops.
    whole_branches: the first this many branches (in root order: the draft's likeliest root
        first) ignore epsilon and run to full length, for H-RAD to cut after verification.
    policy: a draft-length policy spec (`specbranch.policies`) that may stop branches sooner,
        built with policy_gamma and policy_cap; None = none.
    """

    prompt_ids: list[int]
    sampling: SamplingParams
    seed: int
    sampled: bool
    k_max: int = 1
    epsilon: float = 0.0
    whole_branches: int = 0
    policy: str | None = None
    policy_gamma: int = 4
    policy_cap: int = 1


@dataclass
class Decision:
    """The target's verdict on the previous round, which starts the next draft round.

    commit: tokens appended to X since the last decision; pending: the new U, which continues
    branch `branch` of the previous proposal right after its root (branch = -1: U is empty);
    max_len: the longest branch (root included) to draft this round; verified / accepted:
    drafted tokens the last round checked and kept (feedback for the draft-length policy).
    """

    commit: list[int]
    pending: list[int]
    branch: int
    max_len: int
    verified: int = 0
    accepted: int = 0


@dataclass
class BranchProposal:
    """What the draft built from the branch point b.

    branches[i] starts with root i; confidences[i][j] is the draft's confidence (max of its own
    softmax) at the position branches[i][j + 1] was drafted from (H-RAD's implicit signal).
    q_pending: [|U|, V] draft rows the pending tokens were sampled from; q_b: [V] the draft
    distribution at b (both only when drafting is sampled).
    busy_seconds / forwards: the draft side's running totals for this request.
    """

    branches: list[list[int]]
    confidences: list[list[float]] = field(default_factory=list)
    q_pending: torch.Tensor | None = None
    q_b: torch.Tensor | None = None
    busy_seconds: float = 0.0
    forwards: int = 0

    @property
    def roots(self) -> list[int]:
        return [branch[0] for branch in self.branches]


class DraftLink(Protocol):
    """The target's line to the draft: a worker process or an in-process drafter.

    draft_seconds: the draft's measured time of one step (one new token after a short context,
    `specbranch.probe.forward_seconds`), for the cost ratio.
    """

    draft_seconds: float

    def start(self, request: DraftRequest) -> None:
        """Begin a request on the draft side."""

    def send(self, decision: Decision) -> None:
        """Hand over a decision; the draft starts drafting from it."""

    def receive(self) -> BranchProposal:
        """Wait for the draft's proposal for this round."""

    def drain(self) -> None:
        """Drop the proposal of a round that failed after `send`: afterwards the link is ready
        for the next request, or closed (`alive()` False) where the reply could not be read."""

    def alive(self) -> bool:
        """Whether the draft side can still serve rounds."""

    def worker_pid(self) -> int | None:
        """The draft worker's process id (None: the draft runs in the caller's process)."""

    def close(self) -> None:
        """Stop the draft side; safe to call twice."""
