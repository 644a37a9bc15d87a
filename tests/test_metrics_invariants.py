"""Metric invariants hold for every method, greedy and sampled."""

from __future__ import annotations

import pytest
from helpers import make_pair, perturbed, tiny_model

from specbranch.config import GenerationConfig, SamplingParams
from specbranch.engine import Engine
from specbranch.hrad.classes import HradClass
from specbranch.metrics import SUMMARY_KEYS, GenerationMetrics, RoundStats, summarize_runs
from specbranch.metrics import TARGET as TARGET_ORIGIN

TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.01, seed=2))
METHODS = [
    ("ar", {}),
    ("sd", {}),
    ("pearl", {"inline": True, "max_draft_len": 3}),
    ("specbranch", {"execution": "parallel", "inline": True, "k_max": 4, "epsilon": 0.1, "max_draft_len": 4}),
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


def test_hrad_decisions_are_counted_under_their_class_counter():
    m = GenerationMetrics()
    for label in (HradClass.BRANCH_NOW, HradClass.KEEP_ALL, HradClass.KEEP_ALL, -1):
        m.add_round(RoundStats([1], [TARGET_ORIGIN], hrad_class=label), 1)
    assert (m.hrad_keep_none, m.hrad_keep_confident, m.hrad_keep_all) == (1, 0, 2)
    assert {c.counter for c in HradClass} <= set(m.to_dict())
    assert [HradClass.of_verdict(3, a) for a in (0, 1, 3)] == list(HradClass)


def test_a_summary_rates_the_summed_counters_and_averages_overlap_and_cost():
    a = GenerationMetrics(new_tokens=6, target_forwards=2, drafted_tokens=8, verified_tokens=8,
                          accepted_tokens=4, drafted_tokens_total=10, wall_seconds=1.0,
                          target_busy_seconds=0.5, cost_ratio=2.0, accept_lengths=[3, 3])
    b = GenerationMetrics(new_tokens=2, target_forwards=2, drafted_tokens=4, verified_tokens=4,
                          accepted_tokens=0, drafted_tokens_total=4, wall_seconds=3.0, draft_busy_seconds=3.0,
                          cost_ratio=4.0, accept_lengths=[1, 1])
    s = summarize_runs([GenerationMetrics.from_dict(m.to_dict()) for m in (a, b)])
    assert list(s) == list(SUMMARY_KEYS)
    assert s["mean_accepted_length"] == 8 / 4 and s["acceptance_rate"] == 4 / 12
    assert s["rollback_rate"] == 8 / 12 and s["draft_waste"] == 10 / 14
    assert s["branch_hit_rate"] is None and s["hrad_overhead"] is None  # nothing to rate: None, not 0
    assert (s["target_busy_seconds"], s["draft_busy_seconds"]) == (0.5, 3.0)
    assert s["overlap_efficiency"] == (0.5 + 1.0) / 2 and s["cost_ratio"] == 3.0  # means over runs
    assert s["accept_lengths"] == [3, 3, 1, 1]
    assert a.branch_hit_rate == 0.0  # one generation's undefined rate reads 0.0
    nothing = {"accept_lengths": [], "acceptance_by_depth": [], "rounds_by_mode": {}}
    empty = dict.fromkeys(SUMMARY_KEYS) | nothing
    assert summarize_runs([]) == empty


def test_tree_counts_merge_by_depth_and_keep_the_latest_mode():
    a = GenerationMetrics(target_forwards=2, execution="serial", tree_rounds=2, tree_nodes_total=10,
                          tree_depth_total=6, depth_tested=[2, 1], depth_accepted=[2, 0], tree_max_nodes=64,
                          tree_max_depth=24)
    b = GenerationMetrics(target_forwards=1, execution="serial", tree_rounds=1, tree_nodes_total=2,
                          tree_depth_total=3, depth_tested=[1, 1, 1], depth_accepted=[1, 1, 0])
    s = summarize_runs([GenerationMetrics.from_dict(m.to_dict()) for m in (a, b)])
    assert s["execution"] == "serial"
    assert s["mean_tree_size"] == 12 / 3 and s["mean_tree_depth"] == 9 / 3
    assert s["acceptance_by_depth"] == [3 / 3, 1 / 2, 0.0]
    assert a.to_dict()["acceptance_by_depth"] == [1.0, 0.0]
    assert summarize_runs([GenerationMetrics(target_forwards=1)])["mean_tree_size"] is None  # not a tree run
