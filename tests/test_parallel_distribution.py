"""End to end, sampled PEARL and SpecBranch reproduce the processed target distribution.

Same set-up as the SD distribution test: a small-vocabulary target and a misaligned draft; for
thousands of seeds the first generated tokens are counted and compared with the exact target
distribution (chi-square). Three tokens cover a branch point (rules 3/4) followed by pending
tokens (rules 1/2); k_max and epsilon are chosen so that several branches are drafted and
branches are cut by the confidence threshold.
"""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import exact_sequence_distribution, make_pair, tiny_model
from stats import chi_square_pvalue

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.sampling import process_logits

VOCAB = 8
PROMPT = [1, 2, 3]
TARGET = tiny_model(vocab=VOCAB, seed=0, layers=1, hidden=16, init=0.5)
DRAFT = tiny_model(vocab=VOCAB, seed=5, layers=1, hidden=16, init=0.5)
SPECBRANCH = {"execution": "parallel", "k_max": 4, "epsilon": 0.25, "max_draft_len": 3}

CASES = [
    ("pearl-t1-sampled", "pearl", {"max_draft_len": 2}, SamplingParams(temperature=1.0), "sample", 3, 3000),
    ("pearl-topk3-greedy-draft", "pearl", {"max_draft_len": 2}, SamplingParams(temperature=1.0, top_k=3),
     "greedy", 3, 2000),
    ("specbranch-t1-sampled", "specbranch", SPECBRANCH, SamplingParams(temperature=1.0), "sample", 3, 3000),
    ("specbranch-t1-greedy-draft", "specbranch", SPECBRANCH, SamplingParams(temperature=1.0),
     "greedy", 3, 3000),
    ("specbranch-topk3-sampled", "specbranch", SPECBRANCH, SamplingParams(temperature=1.0, top_k=3),
     "sample", 3, 2000),
]


def empirical(method: str, options: dict, sampling: SamplingParams, draft_sampling: str, length: int, n: int):
    counts, branching = Counter(), 0
    spec = SpeculativeConfig(draft_sampling=draft_sampling)
    with Engine(make_pair(TARGET, DRAFT), method, spec, inline=True, **options) as engine:
        for seed in range(n):
            config = GenerationConfig(max_new_tokens=length, sampling=sampling, seed=seed)
            result = engine.generate(PROMPT, config)
            counts[tuple(result.token_ids)] += 1
            branching += result.metrics.drafted_tokens_total > result.metrics.drafted_tokens
    return counts, branching


@pytest.mark.parametrize(
    "name,method,options,sampling,draft_sampling,length,n", CASES, ids=[c[0] for c in CASES]
)
def test_parallel_matches_target_distribution(name, method, options, sampling, draft_sampling, length, n):
    counts, branching = empirical(method, options, sampling, draft_sampling, length, n)
    expected = exact_sequence_distribution(
        TARGET, PROMPT, length, lambda logits: process_logits(logits, sampling)
    )
    assert chi_square_pvalue(counts, expected, n) > 1e-3
    if method == "specbranch":  # the hedge was really used, not just one branch every time
        assert branching > n // 10
