"""End to end, sampled speculative decoding reproduces the processed target distribution.

A small-vocabulary target and a misaligned draft; for thousands of seeds the first generated
tokens are counted and compared with the exact target distribution (chi-square, fixed seeds).
"""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import make_pair, processed_distribution, sampled_counts, tiny_model
from stats import chi_square_pvalue

from specbranch.config import SamplingParams, SpeculativeConfig
from specbranch.engine import Engine

VOCAB = 8
PROMPT = [1, 2, 3]
TARGET = tiny_model(vocab=VOCAB, seed=0, layers=1, hidden=16, init=0.5)
DRAFT = tiny_model(vocab=VOCAB, seed=5, layers=1, hidden=16, init=0.5)


def empirical(
    method: str, sampling: SamplingParams, spec: SpeculativeConfig | None, length: int, n: int
) -> Counter:
    with Engine(make_pair(TARGET, DRAFT), method, spec) as engine:
        return sampled_counts(engine, PROMPT, length, sampling, n)


def exact(sampling: SamplingParams, length: int) -> dict:
    return processed_distribution(TARGET, PROMPT, length, sampling)


CASES = [
    ("t1-sampled-3tok", SamplingParams(temperature=1.0), "sample", 3, 3000),
    ("t1-greedy-draft", SamplingParams(temperature=1.0), "greedy", 2, 2000),
    ("topk3", SamplingParams(temperature=1.0, top_k=3), "sample", 2, 2000),
    ("topp0.7-t0.8", SamplingParams(temperature=0.8, top_p=0.7), "sample", 2, 2000),
]


@pytest.mark.parametrize("name,sampling,draft_sampling,length,n", CASES, ids=[c[0] for c in CASES])
def test_sd_matches_target_distribution(name, sampling, draft_sampling, length, n):
    counts = empirical("sd", sampling, SpeculativeConfig(gamma=2, draft_sampling=draft_sampling), length, n)
    assert chi_square_pvalue(counts, exact(sampling, length), n) > 1e-3


def test_draft_is_misaligned_enough_to_matter():
    """The draft's own distribution differs clearly from the target's (else the test proves little)."""
    sampling = SamplingParams(temperature=1.0)
    target_first = exact(sampling, 1)
    draft_first = processed_distribution(DRAFT, PROMPT, 1, sampling)
    tv = 0.5 * sum(
        abs(target_first.get(k, 0) - draft_first.get(k, 0)) for k in set(target_first) | set(draft_first)
    )
    assert tv > 0.2


def test_ar_sampling_matches_target_distribution():
    sampling = SamplingParams(temperature=1.0)
    counts = empirical("ar", sampling, None, 2, 2000)
    assert chi_square_pvalue(counts, exact(sampling, 2), 2000) > 1e-3
