"""Two-process PEARL and SpecBranch (a real draft worker, real KV caches) sample exactly, checked
per position and per context rather than pooled over whole continuations.

Enumeration (`test_exact_distribution.py`) proves the inline runtime exact; the worker's
proposals equal the inline drafter's bit for bit (`test_parallel_runtime.py`). This test checks
the real thing statistically, at temperatures other than 1 with top-p and top-k: for a prompt
(the context; each case has its own), N seeds generate two tokens, and

- position 1: the first token's counts are tested against the processed target's exact
  next-token distribution after the prompt;
- position 2: among the runs whose first token was the target's most likely one t*, the second
  token's counts are tested against the exact distribution after prompt + t* (a fixed prefix).

Each is a chi-square test at alpha = 1e-3 (seeds are fixed, so the outcome never changes from run
to run). Power: with N = 3200 and the 8-token vocabulary, a deviation of total variation
>= 0.05 at position 1 is detected with probability >= 0.9 whatever its shape
(`stats.detectable_tv`, worst case noncentrality 4 N d^2); position 2 has the conditional sample
count n2 (about a third to a half of N), and the test asserts that it still detects TV >= 0.1.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import make_pair, perturbed, tiny_model
from stats import chi_square_pvalue, detectable_tv

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.sampling import process_logits

N = 3200
ALPHA = 1e-3
TARGET = tiny_model(vocab=8, seed=0, layers=1, hidden=16, init=0.3)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.15, seed=1))
CASES = {  # method, options, sampling, context
    "specbranch-t0.7-topp0.9": (
        "specbranch",
        {"k_max": 4, "epsilon": 0.1, "max_draft_len": 3},
        SamplingParams(0.7, top_p=0.9),
        [1, 2, 3],
    ),
    "pearl-t1.3-topk5": ("pearl", {"max_draft_len": 3}, SamplingParams(1.3, top_k=5), [4, 0, 6, 2]),
}


@torch.inference_mode()
def next_token(prefix: list[int], sampling: SamplingParams) -> dict:
    """The processed target's exact next-token distribution after prefix: {(token,): p}."""
    probs = process_logits(TARGET(torch.tensor([prefix])).logits[0, -1], sampling)
    return {(t,): float(p) for t, p in enumerate(probs) if p > 0}


def assert_fits(counts: Counter, expected: dict, n: int, detect: float) -> None:
    """Chi-square fit at ALPHA, with the stated power to detect a TV deviation of `detect`."""
    cells = sum(1 for p in expected.values() if p * n >= 5) + 1  # pooled rare cells: one more
    assert detectable_tv(n, cells, ALPHA) <= detect, f"n = {n} is too small to detect TV {detect}"
    assert chi_square_pvalue(counts, expected, n) > ALPHA


@pytest.mark.parametrize("case", CASES)
def test_two_process_sampling_is_exact_per_position_and_context(case):
    method, options, sampling, context = CASES[case]
    with Engine(PAIR, method, SpeculativeConfig(draft_sampling="sample"), **options) as engine:
        configs = [GenerationConfig(2, sampling, seed) for seed in range(N)]
        outputs = [tuple(engine.generate(context, config).token_ids) for config in configs]
    first = next_token(context, sampling)
    assert_fits(Counter(o[:1] for o in outputs), first, N, detect=0.05)
    top = max(first, key=first.get)
    seconds = Counter(o[1:] for o in outputs if o[:1] == top)
    n2 = sum(seconds.values())
    assert_fits(seconds, next_token(context + list(top), sampling), n2, detect=0.1)
