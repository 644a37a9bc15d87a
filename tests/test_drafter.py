"""The draft side of the parallel methods sends the rows its tokens were sampled from.

Rules 1 and 4 are exact only if each drafted token's q row is the *processed* distribution it
was drawn from (same temperature, top-k, top-p as the target's) and sits at that token's
position. These tests recompute every row from a full forward of the draft over the committed
prefix and compare: the root row q_b, and the pending block's rows after a hit kept the rest of
the branch (whole, or cut to a prefix as H-RAD cuts it).
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model

from specbranch.backends.base import KVSequence
from specbranch.backends.pytorch import TorchBackend
from specbranch.config import SamplingParams
from specbranch.decoders.drafter import BranchDrafter
from specbranch.sampling import process_logits
from specbranch.transport.messages import Decision, DraftRequest

DRAFT = tiny_model(vocab=16, seed=4, init=0.2)
PROMPT = [3, 1, 4, 1, 5]
SAMPLINGS = [SamplingParams(temperature=0.7, top_p=0.8), SamplingParams(temperature=1.3, top_k=5)]


@torch.inference_mode()
def processed_row(prefix: list[int], sampling: SamplingParams) -> torch.Tensor:
    """The draft's processed next-token distribution after `prefix`, from a full forward: [V]."""
    return process_logits(DRAFT(torch.tensor([prefix])).logits[0, -1], sampling)


@pytest.mark.parametrize("kept", [None, 1, 2])
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_pending_rows_are_the_processed_rows_the_tokens_were_sampled_from(sampling, kept):
    drafter = BranchDrafter(KVSequence(TorchBackend(DRAFT, 16)), frozenset())
    drafter.start(DraftRequest(PROMPT, sampling, seed=0, sampled=True, k_max=1, epsilon=0.0))
    first = drafter.round(Decision(PROMPT, [], -1, 5))
    assert torch.allclose(first.q_b, processed_row(PROMPT, sampling), atol=1e-6)
    root, *rest = first.branches[0]
    pending = rest[:kept] if kept is not None else rest
    assert len(pending) == (kept or 4)
    second = drafter.round(Decision([root], pending, 0, 5))
    prefixes = [PROMPT + [root] + pending[:i] for i in range(len(pending))]
    expected = torch.stack([processed_row(prefix, sampling) for prefix in prefixes])  # [|U|, V]
    assert torch.allclose(second.q_pending, expected, atol=1e-6)
    assert torch.allclose(second.q_b, processed_row(PROMPT + [root] + pending, sampling), atol=1e-6)
