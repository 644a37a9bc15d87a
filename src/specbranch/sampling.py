"""The logits pipeline shared by draft and target, and sampling from its output.

`process_logits` turns raw logits into the *processed* distribution: temperature, then top-k,
then top-p. Draft and target always go through the same function with the same parameters, so
verification compares like with like.

All randomness of decoding goes through two functions: `sample` (a token from a distribution)
and `uniform` (one uniform in [0, 1) for one accept/reject test), drawing from a per-request
`torch.Generator` (`make_generator`). Both also accept any `RandomSource` (an object with
`choice` and `uniform`): the test suite's enumerating oracle is one, which runs a generation once
per combination of random outcomes to compute its exact output distribution.
"""

from __future__ import annotations

from typing import Protocol

import torch

from specbranch.config import SamplingParams


class RandomSource(Protocol):
    """A source of decoding randomness other than a torch.Generator (see the module docstring).

    choice(probs): a token id drawn from a [V] distribution; uniform(): a value u in [0, 1)
    that is only ever compared with a threshold (`u < a` or `u >= a`).
    """

    def choice(self, probs: torch.Tensor) -> int: ...

    def uniform(self) -> object: ...


def process_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Processed next-token distributions.

    logits: [..., V] raw logits (any float dtype). Returns [..., V] float32 probabilities.
    At temperature 0 (or top_k == 1) the result is one-hot on the argmax.
    """
    logits = logits.float()
    if params.greedy:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]  # [..., 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [..., V]
        sorted_probs = sorted_logits.softmax(-1)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs  # mass of strictly more likely tokens
        drop_sorted = mass_before >= params.top_p  # keeps the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(-1)


def sample(probs: torch.Tensor, generator: torch.Generator | RandomSource) -> int:
    """One token id drawn from a [V] distribution with the given generator.

    A point mass (greedy decoding's processed rows) is returned without a draw: there is
    nothing to draw, and a multinomial over a 150k vocabulary costs milliseconds per call.
    """
    if not isinstance(generator, torch.Generator):
        return generator.choice(probs)
    if int(torch.count_nonzero(probs)) == 1:
        return int(probs.argmax())
    return int(torch.multinomial(probs, 1, generator=generator).item())


def sample_without_replacement(
    probs: torch.Tensor, k: int, generator: torch.Generator | RandomSource
) -> tuple[list[int], list[torch.Tensor]]:
    """k distinct tokens drawn one after the other from a [V] distribution, each from probs with
    the earlier ones removed and the rest renormalised (at most as many as probs has nonzero
    entries). Returns the tokens and, for each, the [V] distribution it was drawn from."""
    tokens, rows, rest = [], [], probs
    for _ in range(min(k, int((probs > 0).sum()))):
        rows.append(rest)
        tokens.append(sample(rest, generator))
        rest = rest.clone()
        rest[tokens[-1]] = 0.0
        rest = rest / rest.sum()
    return tokens, rows


def without(probs: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """probs ([V]) with `tokens` removed and the rest renormalised (probs itself when tokens is
    empty); all zeros when nothing is left."""
    if not tokens:
        return probs
    rest = probs.clone()
    rest[tokens] = 0.0
    total = rest.sum()
    return rest / total if total > 0 else rest


def uniform(generator: torch.Generator | RandomSource) -> float:
    """One fresh uniform in [0, 1) for one accept/reject test (never reuse it for another)."""
    if not isinstance(generator, torch.Generator):
        return generator.uniform()
    return float(torch.rand((), generator=generator, device=generator.device))


def make_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one request and one purpose, on the device of the rows it draws from
    (`torch.multinomial` needs the generator on the distribution's device).

    stream names the purpose ("verify", "draft"): each purpose gets its own independent
    sequence, so the draft's randomness never shares uniforms with verification.
    """
    offsets = {"verify": 0x5EED_0001, "draft": 0x5EED_0002}
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 0x9E3779B1 + offsets[stream]) % (2**63))
    return generator
