"""Draft-length policies: their decisions, the bandit, and that none of them changes the output.

Decisions are checked on hand-made draft distributions; the bandit on a synthetic reward;
losslessness end to end (greedy equality with AR, chi-square at temperature 1) with every
policy plugged into SD, PEARL and SpecBranch.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from helpers import make_pair, perturbed, processed_distribution, sampled_counts, tiny_model
from stats import chi_square_pvalue

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.errors import SpecBranchError
from specbranch.policies import POLICIES, RoundFeedback, build_policy, entropy, parse_policy
from specbranch.policies.fixed import FixedPolicy
from specbranch.policies.tapout import TapOutPolicy

V = 64
PEAKED = torch.full((V,), 0.01 / (V - 1)).index_fill_(0, torch.tensor([5]), 0.99)  # H ~ 0.1 nats
FLAT = torch.full((V,), 1.0 / V)  # H = ln 64 ~ 4.2 nats
BOTH = torch.stack([PEAKED, FLAT])  # [2, V]
FULL = RoundFeedback(drafted=4, accepted=4, committed=5, seconds=0.1)
PARTIAL = RoundFeedback(drafted=4, accepted=1, committed=2, seconds=0.1)


def test_entropy_of_uniform_is_log_vocab_and_of_one_hot_is_zero():
    assert entropy(FLAT[None]).item() == pytest.approx(math.log(V))
    assert entropy(torch.eye(V)[:1]).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["heuristic", "adaedl", "svip"])
def test_confident_draft_keeps_drafting_and_unsure_draft_stops(name):
    policy = build_policy(name, gamma=4, cap=8)
    assert policy.keep(BOTH) == [True, False]


@pytest.mark.parametrize("name", ["fixed", "cost"])
def test_length_only_policies_never_stop_early(name):
    policy = build_policy(name, gamma=5, cap=9)
    assert policy.keep(BOTH) == [True, True]
    assert policy.max_length() == (5 if name == "fixed" else 9)


def test_heuristic_grows_by_two_after_full_acceptance_and_shrinks_by_one_otherwise():
    policy = build_policy("heuristic", gamma=4, cap=8)
    policy.observe(FULL)
    assert policy.max_length() == 6
    policy.observe(PARTIAL)
    assert policy.max_length() == 5
    for _ in range(10):
        policy.observe(PARTIAL)
    assert policy.max_length() == 1


def test_heuristic_confidence_threshold_is_an_option():
    medium = torch.full((V,), 0.7 / (V - 1)).index_fill_(0, torch.tensor([0]), 0.3)[None]  # max q = 0.3
    assert build_policy("heuristic", 4, 8).keep(medium) == [False]
    assert build_policy("heuristic:threshold=0.2", 4, 8).keep(medium) == [True]


def test_adaedl_threshold_rises_after_rejections_and_falls_after_full_acceptance():
    policy = build_policy("adaedl:start=0.5,step=0.1", gamma=4, cap=8)
    policy.observe(PARTIAL)
    assert policy.threshold == pytest.approx(0.6)
    policy.observe(FULL)
    policy.observe(FULL)
    assert policy.threshold == pytest.approx(0.4)
    for _ in range(20):
        policy.observe(PARTIAL)
    assert policy.threshold == pytest.approx(0.95)


def test_svip_threshold_decides_a_medium_entropy_draft():
    # 0.8 on one token, 0.2 spread: H ~ 1.33 nats, bound 1 - sqrt(0.2 H) ~ 0.48
    medium = torch.full((V,), 0.2 / (V - 1)).index_fill_(0, torch.tensor([0]), 0.8)[None]
    assert build_policy("svip", 4, 8).keep(medium) == [False]
    assert build_policy("svip:threshold=0.4", 4, 8).keep(medium) == [True]


@pytest.mark.parametrize(
    "spec",
    ["nope", "svip:threshold", "svip:gamma=3", "svip:threshold=high", "fixed:gamma=0", "adaedl:beta=2"],
)
def test_bad_policy_specs_are_clear_errors(spec):
    with pytest.raises(SpecBranchError, match="draft policy"):
        parse_policy(spec)
    with pytest.raises(SpecBranchError):
        SpeculativeConfig(draft_policy=spec)


def test_tapout_bandit_converges_to_the_best_arm():
    arms = [FixedPolicy(2), FixedPolicy(4), FixedPolicy(8)]
    rate = {2: 10.0, 4: 30.0, 8: 18.0}  # committed tokens per second by arm (arm 1 is best)
    policy, rng = TapOutPolicy(arms), random.Random(0)
    for _ in range(400):
        length = policy.max_length()
        seconds = 0.1
        committed = max(0, round(rng.gauss(rate[length] * seconds, 0.5)))
        policy.observe(RoundFeedback(length, committed, committed, seconds))
    assert policy.pulls[1] > 0.7 * sum(policy.pulls)
    assert min(policy.pulls) >= 1  # every arm was explored


# --- losslessness --------------------------------------------------------------------------

TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.02, seed=2))
PROMPT = [3, 17, 42, 8, 8, 1]
METHOD_OPTIONS = {"sd": {}, "pearl": {"inline": True, "max_draft_len": 4},
                  "specbranch": {"execution": "parallel", "inline": True, "k_max": 3, "epsilon": 0.1,
                                 "max_draft_len": 5}}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("method", ["sd", "pearl", "specbranch"])
def test_greedy_output_equals_ar_with_every_policy(method, policy):
    config = GenerationConfig(max_new_tokens=40)
    with Engine(PAIR, "ar") as engine:
        expected = [engine.generate(PROMPT[:n], config).token_ids for n in (3, 6)]
    spec = SpeculativeConfig(gamma=3, draft_sampling="greedy", draft_policy=policy)
    with Engine(PAIR, method, spec, **METHOD_OPTIONS[method]) as engine:
        assert [engine.generate(PROMPT[:n], config).token_ids for n in (3, 6)] == expected


def test_policy_crosses_to_the_draft_worker_process():
    config = GenerationConfig(max_new_tokens=40)
    expected = Engine(PAIR, "ar").generate(PROMPT, config).token_ids
    spec = SpeculativeConfig(draft_sampling="greedy", draft_policy="svip:threshold=0.5,cap=3")
    options = {"execution": "parallel", "k_max": 3, "epsilon": 0.1, "max_draft_len": 5}
    with Engine(PAIR, "specbranch", spec, **options) as engine:
        result = engine.generate(PROMPT, config)
        assert result.token_ids == expected
        assert engine.decoder.link.alive()


SMALL_TARGET = tiny_model(vocab=8, seed=0, layers=1, hidden=16, init=0.5)
SMALL_DRAFT = tiny_model(vocab=8, seed=5, layers=1, hidden=16, init=0.5)
DIST_CASES = [("sd", p) for p in POLICIES] + [("specbranch", "tapout"), ("pearl", "adaedl")]


@pytest.mark.parametrize(("method", "policy"), DIST_CASES, ids=[f"{m}-{p}" for m, p in DIST_CASES])
def test_temperature_one_distribution_is_exact_with_every_policy(method, policy):
    sampling, length, n = SamplingParams(temperature=1.0), 3, 1500
    spec = SpeculativeConfig(gamma=2, draft_policy=policy)
    options = {"sd": {}, "pearl": {"inline": True, "max_draft_len": 2},
               "specbranch": {"execution": "parallel", "inline": True, "k_max": 4, "epsilon": 0.25,
                              "max_draft_len": 3}}[method]
    with Engine(make_pair(SMALL_TARGET, SMALL_DRAFT), method, spec, **options) as engine:
        counts = sampled_counts(engine, [1, 2, 3], length, sampling, n)
    expected = processed_distribution(SMALL_TARGET, [1, 2, 3], length, sampling)
    assert chi_square_pvalue(counts, expected, n) > 1e-3


def test_bench_variant_carries_policy_options():
    from specbranch.bench.methods import parse_method

    spec = parse_method("sd:draft_policy=svip,threshold=0.5,gamma=6,cap=4").spec
    assert (spec.draft_policy, spec.gamma) == ("svip:threshold=0.5,cap=4", 6)
    assert parse_method("specbranch:draft_policy=adaedl,k_max=2").options == {"k_max": 2}
    with pytest.raises(SpecBranchError, match="draft policy"):
        parse_method("sd:draft_policy=svip,bogus=1")
