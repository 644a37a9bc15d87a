"""`BandedHead`: a half-precision output projection whose argmax is the float32 projection's.

Terms: the *float32 projection* is weight.float() @ hidden.float() (the weights and the hidden
state are half precision, so its products are exact and only the accumulation rounds); the
*band* of a row is the tokens whose half-precision logit is within 2 s of the row's largest,
s = BAND x the row's largest |logit| + FLOOR. The head recomputes the band in float32, so the
band's logits equal the float32 projection's and the argmax is the float32 one, also at near
ties that rounding to 8 bits of mantissa turns into exact ties.
"""

from __future__ import annotations

import pytest
import torch

from specbranch.models.numerics import BandedHead

VOCAB, WIDTH = 4096, 64


def head_pair(dtype: torch.dtype, bias: bool) -> tuple[BandedHead, torch.nn.Linear]:
    """A random half-precision head as BandedHead, and the float32 projection of the same weights."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(WIDTH, VOCAB, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(VOCAB, WIDTH, generator=gen) * 0.5)
        # Near ties: rows 1..8 are row 0 nudged by less than half precision resolves in a logit.
        linear.weight[1:9] = linear.weight[0] + 1e-3 * torch.randn(8, WIDTH, generator=gen)
        if bias:
            linear.bias.copy_(torch.randn(VOCAB, generator=gen))
    half = linear.to(dtype)
    exact = torch.nn.Linear(WIDTH, VOCAB, bias=bias)
    exact.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    return BandedHead(half), exact


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bias", [False, True])
def test_banded_head_argmax_is_the_float32_argmax_also_at_near_ties(dtype, bias):
    head, exact = head_pair(dtype, bias)
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 400, WIDTH, generator=gen)
    hidden[:, :200] += 4 * head.weight[0].float()  # rows where tokens 0..8 lead, nearly tied
    hidden = hidden.to(dtype)  # [3, 400, WIDTH] as the model's last layer leaves it
    with torch.no_grad():
        got, want = head(hidden), exact(hidden.float())  # [3, 400, V]
        rounded = (hidden @ head.weight.T).float()  # what a plain half-precision head returns
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    top = want.argmax(-1, keepdim=True)
    assert torch.allclose(got.gather(-1, top), want.gather(-1, top), rtol=0, atol=1e-5)
    # The near ties were real: half precision alone picks another token in some rows ...
    assert (rounded.argmax(-1) != want.argmax(-1)).any()
    # ... and the band was narrow: most logits stayed half precision.
    refined = (got != rounded + (head.bias if bias else 0)).float().mean()
    assert 0 < refined < 0.05


def test_banded_head_keeps_rows_apart_a_row_refines_its_own_band_only():
    head, _ = head_pair(torch.bfloat16, bias=False)
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(5, WIDTH, generator=gen).to(torch.bfloat16)  # [5, WIDTH]
    with torch.no_grad():
        together = head(hidden)  # [5, V]
        alone = torch.cat([head(hidden[i : i + 1]) for i in range(5)])  # [5, V]
    # Each row's logits are its own, whatever rows share the forward (up to accumulation order).
    assert torch.allclose(together, alone, rtol=0, atol=1e-5)
