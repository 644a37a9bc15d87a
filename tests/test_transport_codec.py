"""Every message survives encode -> decode unchanged, and the codec covers every field.

Frames are also pushed through the wire's own conversions (int64 ints, float64 floats,
float32 rows), as the two-process transport sends them.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from specbranch.config import SamplingParams
from specbranch.transport import codec
from specbranch.transport.codec import Frame, Kind
from specbranch.transport.messages import BranchProposal, Decision, DraftRequest

V = 7


def over_the_wire(frame: Frame) -> Frame:
    """What the process transport's channel delivers for a frame."""
    ints = torch.tensor(list(frame.ints), dtype=torch.long).tolist()
    floats = torch.tensor(list(frame.floats), dtype=torch.float64).tolist()
    rows = frame.rows.float() if frame.rows is not None else None
    return Frame(int(frame.kind), ints, floats, rows)


REQUESTS = {
    "sampled, no policy": DraftRequest([5, 1, 9], SamplingParams(0.7, 40, 0.9), 3, True, 4, 0.3, 1),
    "greedy, no policy": DraftRequest([2], SamplingParams(), 0, False),
    "sampled, policy": DraftRequest(
        [8, 8, 1], SamplingParams(1.0), 11, True, 2, 0.25, 0, "svip:threshold=0.5", 6, 9
    ),
    "greedy, policy": DraftRequest([1, 2, 3], SamplingParams(top_k=1), 7, False, 1, 0.0, 0, "adaedl", 4, 3),
}


@pytest.mark.parametrize("wire", [False, True], ids=["direct", "wire"])
@pytest.mark.parametrize("name", REQUESTS)
def test_request_round_trip(name, wire):
    frame = codec.encode_request(REQUESTS[name])
    assert frame.kind == Kind.START
    decoded = codec.decode_request(over_the_wire(frame) if wire else frame)
    assert decoded == REQUESTS[name]
    assert isinstance(decoded.sampled, bool)


DECISIONS = [
    Decision([4, 5, 6], [7, 8], 2, 5, 3, 2),
    Decision([9], [], -1, 1),
    Decision([], [3], 0, 4, 1, 1),
]


@pytest.mark.parametrize("wire", [False, True], ids=["direct", "wire"])
@pytest.mark.parametrize("decision", DECISIONS)
def test_decision_round_trip(decision, wire):
    frame = codec.encode_decision(decision)
    assert frame.kind == Kind.DECISION
    assert codec.decode_decision(over_the_wire(frame) if wire else frame) == decision


def q_rows(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, V, generator=gen).softmax(-1)  # float32, as the wire carries them


PROPOSALS = {
    "greedy": BranchProposal([[3, 4, 5], [6]], [[0.9, 0.8], []], busy_seconds=0.25, forwards=7),
    "greedy, no confidences": BranchProposal([[1, 2]], busy_seconds=1.5, forwards=2),
    "sampled": BranchProposal(
        [[2, 2], [0, 1, 6]], [[0.5], [0.75, 0.625]], q_rows(2, 0), q_rows(1, 1)[0], 3.0, 12
    ),
    "sampled, empty U": BranchProposal([[5]], [[]], q_rows(0, 2), q_rows(1, 3)[0], 0.5, 1),
}


@pytest.mark.parametrize("wire", [False, True], ids=["direct", "wire"])
@pytest.mark.parametrize("name", PROPOSALS)
def test_proposal_round_trip(name, wire):
    proposal = PROPOSALS[name]
    frame = codec.encode_proposal(proposal)
    assert frame.kind == Kind.PROPOSAL
    decoded = codec.decode_proposal(over_the_wire(frame) if wire else frame)
    assert decoded.branches == proposal.branches and decoded.roots == proposal.roots
    assert decoded.confidences == proposal.confidences
    assert (decoded.busy_seconds, decoded.forwards) == (proposal.busy_seconds, proposal.forwards)
    for got, want in ((decoded.q_pending, proposal.q_pending), (decoded.q_b, proposal.q_b)):
        assert (got is None) == (want is None)
        if want is not None:
            assert torch.equal(got, want)


def test_control_messages_round_trip():
    assert codec.decode_hello(over_the_wire(codec.encode_hello(0.0123))) == 0.0123
    text = "Traceback (most recent call last):\n  ValueError: ünïcode"
    assert codec.decode_error(over_the_wire(codec.encode_error(text))) == text
    assert codec.STOP_FRAME.kind == Kind.STOP and not codec.STOP_FRAME.ints


def test_codec_carries_every_field():
    """A field added to a message or to SamplingParams must be added to the codec too."""
    request = set(codec._REQUEST_INTS + codec._REQUEST_FLOATS) | {"prompt_ids", "sampling", "policy"}
    assert request == {f.name for f in fields(DraftRequest)}
    assert set(codec._SAMPLING_INTS + codec._SAMPLING_FLOATS) == {f.name for f in fields(SamplingParams)}
    assert set(codec._DECISION_INTS) | {"commit", "pending"} == {f.name for f in fields(Decision)}
    proposal = set(codec._PROPOSAL_INTS + codec._PROPOSAL_FLOATS) | {"branches", "confidences"}
    assert proposal | {"q_pending", "q_b"} == {f.name for f in fields(BranchProposal)}
