"""The draft in the caller's process: each round runs the drafter when its proposal is asked for.

Draft and target then take turns instead of running at the same time (serial rounds), with the
same tokens as the two-process runtime: the reference for tests and for machines with one core.
"""

from __future__ import annotations

from specbranch.decoders.drafter import BranchDrafter
from specbranch.probe import forward_seconds
from specbranch.transport.messages import BranchProposal, Decision, DraftRequest


class InlineLink:
    """A `DraftLink` to a drafter in this process; measures its step time when built."""

    def __init__(self, drafter: BranchDrafter) -> None:
        self.drafter = drafter
        self.decision: Decision | None = None
        self.draft_seconds = forward_seconds(drafter.kv, new_tokens=1)

    def start(self, request: DraftRequest) -> None:
        self.drafter.start(request)

    def send(self, decision: Decision) -> None:
        self.decision = decision

    def receive(self) -> BranchProposal:
        assert self.decision is not None, "send a decision first"
        return self.drafter.round(self.decision)

    def drain(self) -> None:
        self.decision = None  # the drafter drafts only when asked: nothing is in flight

    def alive(self) -> bool:
        return True

    def worker_pid(self) -> int | None:
        return None

    def close(self) -> None:
        pass
