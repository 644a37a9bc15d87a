"""Metric invariants hold for every method, greedy and sampled."""

from __future__ import annotations

import pytest
from helpers import make_pair, perturbed, tiny_model

from specbranch.config import GenerationConfig, SamplingParams
from specbranch.engine import Engine

TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.01, seed=2))
METHODS = [
    ("ar", {}),
    ("sd", {}),
    ("pearl", {"inline": True, "max_draft_len": 3}),
    ("specbranch", {"inline": True, "k_max": 4, "epsilon": 0.1, "max_draft_len": 4}),
]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("method,options", METHODS, ids=[m for m, _ in METHODS])
def test_metric_invariants(method, options, temperature):
    config = GenerationConfig(max_new_tokens=37, sampling=SamplingParams(temperature=temperature), seed=3)
    with Engine(PAIR, method, **options) as engine:
        result = engine.generate([3, 17, 42, 8], config)
    m = result.metrics
    assert m.new_tokens == len(result.token_ids) == sum(m.accept_lengths) == 37
    assert m.target_forwards == len(m.accept_lengths)
    assert all(n >= 1 for n in m.accept_lengths)
    assert 0 <= m.accepted_tokens <= m.verified_tokens <= m.drafted_tokens <= m.drafted_tokens_total
    assert 0 <= m.branch_hits <= m.branch_rounds <= m.target_forwards
    for rate in (m.acceptance_rate, m.rollback_rate, m.draft_waste, m.branch_hit_rate, m.overlap_efficiency):
        assert 0.0 <= rate <= 1.0
    assert m.mean_accepted_length >= 1.0
    assert m.tokens_per_second > 0
    if method == "ar":
        assert m.mean_accepted_length == 1.0 and m.drafted_tokens == 0
    else:
        assert m.drafted_tokens > 0 and m.draft_busy_seconds > 0
    assert set(m.to_dict()) >= {"acceptance_rate", "mean_accepted_length", "rollback_rate", "draft_waste",
                                "branch_hit_rate", "overlap_efficiency", "tokens_per_second"}
