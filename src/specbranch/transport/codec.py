"""Messages as flat values for a wire, and back: a `Frame` (kind, ints, floats, rows).

A transport that moves bytes or tensors moves frames: a message `Kind`, int64 values, float64
values and float32 rows ([n, V], or None). Each message's encoder sits right above its decoder.
Scalar fields are listed once per message (the `_*_INTS` / `_*_FLOATS` name tuples), and both
directions read that list; variable-length parts (token lists, branches, the policy name)
follow the scalars, each after its length. `decode(encode(message)) == message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NamedTuple

import torch

from specbranch.config import SamplingParams
from specbranch.transport.messages import BranchProposal, Decision, DraftRequest


class Kind(IntEnum):
    """Message kinds: what a frame carries."""

    START = 0  # a DraftRequest: begin a request
    DECISION = 1  # a Decision: run a round
    PROPOSAL = 2  # a BranchProposal: the round's answer
    STOP = 3  # nothing: the draft side exits
    HELLO = 4  # the draft side is ready: floats = [draft_seconds]
    ERROR = 5  # the draft side failed: ints = its traceback as UTF-8 bytes


class Frame(NamedTuple):
    """One message as flat values."""

    kind: int
    ints: Sequence[int] = ()
    floats: Sequence[float] = ()
    rows: torch.Tensor | None = None


class _Cursor:
    """Reads a flat list of values front to back."""

    def __init__(self, values: Sequence) -> None:
        self.values, self.at = list(values), 0

    def take(self, n: int) -> list:
        self.at += n
        return self.values[self.at - n : self.at]

    def sized(self) -> list:
        """A list written as its length, then its values."""
        return self.take(self.take(1)[0])

    def named(self, names: tuple[str, ...]) -> dict[str, Any]:
        return dict(zip(names, self.take(len(names)), strict=True))

    def rest(self) -> list:
        return self.take(len(self.values) - self.at)


def _scalars(obj: object, names: tuple[str, ...]) -> list:
    return [getattr(obj, name) for name in names]


def _ragged(lists: list[list]) -> tuple[list[int], list]:
    """[[a, b], [c]] -> ([2, 2, 1], [a, b, c]): count and lengths, then the values."""
    return [len(lists), *(len(x) for x in lists)], [v for x in lists for v in x]


def _unragged(sizes: _Cursor, values: _Cursor) -> list[list]:
    """Inverse of `_ragged`, reading the lengths from `sizes` and the values from `values`."""
    return [values.take(n) for n in sizes.sized()]


# START: scalars, then the policy name (sized UTF-8 bytes), then the prompt (the rest).
_REQUEST_INTS = ("seed", "sampled", "k_max", "whole_branches", "policy_gamma", "policy_cap")
_REQUEST_FLOATS = ("epsilon",)
_SAMPLING_INTS = ("top_k",)
_SAMPLING_FLOATS = ("temperature", "top_p")


def encode_request(request: DraftRequest) -> Frame:
    s, policy = request.sampling, list((request.policy or "").encode())
    ints = _scalars(request, _REQUEST_INTS) + _scalars(s, _SAMPLING_INTS) + [len(policy), *policy]
    floats = _scalars(request, _REQUEST_FLOATS) + _scalars(s, _SAMPLING_FLOATS)
    return Frame(Kind.START, [int(v) for v in ints] + list(request.prompt_ids), floats)


def decode_request(frame: Frame) -> DraftRequest:
    ints, floats = _Cursor(frame.ints), _Cursor(frame.floats)
    fields = ints.named(_REQUEST_INTS) | floats.named(_REQUEST_FLOATS)
    sampling = SamplingParams(**ints.named(_SAMPLING_INTS), **floats.named(_SAMPLING_FLOATS))
    fields["sampled"] = bool(fields["sampled"])
    policy = bytes(ints.sized()).decode() or None
    return DraftRequest(ints.rest(), sampling, policy=policy, **fields)


# DECISION: scalars, then the committed tokens (sized), then the pending tokens (the rest).
_DECISION_INTS = ("branch", "max_len", "verified", "accepted")


def encode_decision(decision: Decision) -> Frame:
    ints = _scalars(decision, _DECISION_INTS) + [len(decision.commit), *decision.commit]
    return Frame(Kind.DECISION, ints + list(decision.pending))


def decode_decision(frame: Frame) -> Decision:
    ints = _Cursor(frame.ints)
    fields = ints.named(_DECISION_INTS)
    commit = ints.sized()
    return Decision(commit, ints.rest(), **fields)


# PROPOSAL: ints = scalars, branches (ragged), confidence lengths; floats = scalars, confidences;
# rows = [q_pending; q_b] ([|U|+1, V]) when drafting is sampled.
_PROPOSAL_INTS = ("forwards",)
_PROPOSAL_FLOATS = ("busy_seconds",)


def encode_proposal(proposal: BranchProposal) -> Frame:
    branch_sizes, tokens = _ragged(proposal.branches)
    confidence_sizes, confidences = _ragged(proposal.confidences)
    ints = _scalars(proposal, _PROPOSAL_INTS) + branch_sizes + tokens + confidence_sizes
    floats = _scalars(proposal, _PROPOSAL_FLOATS) + confidences
    rows = None if proposal.q_b is None else torch.cat([proposal.q_pending, proposal.q_b[None]])
    return Frame(Kind.PROPOSAL, ints, floats, rows)


def decode_proposal(frame: Frame) -> BranchProposal:
    ints, floats, rows = _Cursor(frame.ints), _Cursor(frame.floats), frame.rows
    fields = ints.named(_PROPOSAL_INTS) | floats.named(_PROPOSAL_FLOATS)
    branches = _unragged(ints, ints)
    confidences = _unragged(ints, floats)
    q_pending, q_b = (rows[:-1], rows[-1]) if rows is not None else (None, None)
    return BranchProposal(branches, confidences, q_pending, q_b, **fields)


def encode_hello(draft_seconds: float) -> Frame:
    return Frame(Kind.HELLO, floats=[draft_seconds])


def decode_hello(frame: Frame) -> float:
    (draft_seconds,) = frame.floats
    return draft_seconds


def encode_error(text: str) -> Frame:
    return Frame(Kind.ERROR, list(text.encode()))


def decode_error(frame: Frame) -> str:
    return bytes(frame.ints).decode(errors="replace")


STOP_FRAME = Frame(Kind.STOP)
