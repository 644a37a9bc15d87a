"""Exact output distributions of every method, through the production code, by enumeration.

The enumerating oracle (`oracle.py`) stands in for the per-request random generators and runs a
whole generation (`Engine.generate`, real KV caches, the inline draft side) once per
combination of random outcomes, so the result is each method's *exact* distribution of its
first L generated tokens. It must equal the processed target's own distribution (autoregressive
sampling, `helpers.exact_sequence_distribution`) up to float rounding of the probability rows
(TOLERANCE). Nothing is sampled: a bias of any size at any position in these contexts fails.

Covered: SD, PEARL and SpecBranch (inline); sampled and greedy (argmax / top-k) drafting;
temperatures 0.7, 1 and 1.3, top-k and top-p; every draft-length policy; H-RAD with each
class forced. The models are tiny (vocabulary 4), the draft a perturbed copy of the target, so
acceptance is partial and SpecBranch branches (2-3 roots). L = 3 for SD (a 2-token block and a
bonus), L = 2 for the parallel methods (round 2 verifies the pending block U left by round 1,
then the branch point).

The same enumeration proves independence: every uniform the code draws is compared with at most
one threshold (`Enumerator.reused == 0`), within a block, between the pending block and the
branch point, and across rounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import exact_sequence_distribution, forced_predictor, make_pair, perturbed, tiny_model
from oracle import Enumerator, install, max_difference

from specbranch.config import GenerationConfig, ParallelConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.hrad.classes import HradClass
from specbranch.hrad.keeper import PredictorKeeper
from specbranch.policies import POLICIES
from specbranch.runtime import build_parallel
from specbranch.sampling import process_logits

TOLERANCE = 1e-6
TARGET = tiny_model(vocab=4, seed=0, layers=1, hidden=16, init=0.3)
DRAFT = perturbed(TARGET, 0.15, seed=1)
PAIR = make_pair(TARGET, DRAFT)
PROMPT = [1, 2, 3]
SAMPLINGS = {
    "t0.7": SamplingParams(temperature=0.7),
    "t1": SamplingParams(temperature=1.0),
    "t1.3": SamplingParams(temperature=1.3),
    "topk2": SamplingParams(temperature=1.0, top_k=2),
    "topp0.8": SamplingParams(temperature=1.0, top_p=0.8),
}
PARALLEL = {
    "pearl": {"inline": True, "max_draft_len": 2},
    "specbranch": {
        "execution": "parallel", "inline": True, "k_max": 4, "epsilon": 0.1, "max_draft_len": 2, "hrad": None
    },
}


EngineOrFactory = Engine | Callable[[], Engine]


def exact(
    engine: EngineOrFactory, sampling: SamplingParams, length: int, monkeypatch
) -> tuple[dict, Enumerator]:
    """The exact distribution of the first `length` tokens, and the oracle that found it.

    engine: one engine for every run, or a factory called per run (a draft-length policy learns
    across requests, so its runs need fresh state to be deterministic given their outcomes).
    """
    oracle = Enumerator()
    install(monkeypatch, oracle)
    config = GenerationConfig(max_new_tokens=length, sampling=sampling, ignore_eos=True)

    def run() -> tuple[int, ...]:
        fresh = engine if isinstance(engine, Engine) else engine()
        return tuple(fresh.generate(PROMPT, config).token_ids)

    got = oracle.distribution(run)
    monkeypatch.undo()
    return got, oracle


def target_distribution(sampling: SamplingParams, length: int) -> dict:
    process = lambda logits: process_logits(logits, sampling)  # noqa: E731
    return exact_sequence_distribution(TARGET, PROMPT, length, process)


def assert_exact(engine: EngineOrFactory, sampling: SamplingParams, length: int, monkeypatch) -> None:
    got, oracle = exact(engine, sampling, length, monkeypatch)
    assert max_difference(got, target_distribution(sampling, length)) < TOLERANCE
    assert oracle.reused == 0, "a uniform decided two accept/reject tests"
    assert oracle.runs > 1


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=list(SAMPLINGS))
def test_sd_is_exact(sampling, draft_sampling, monkeypatch):
    spec = SpeculativeConfig(gamma=2, draft_sampling=draft_sampling)
    assert_exact(Engine(PAIR, "sd", spec), SAMPLINGS[sampling], 3, monkeypatch)


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=list(SAMPLINGS))
@pytest.mark.parametrize("method", PARALLEL)
def test_parallel_methods_are_exact(method, sampling, draft_sampling, monkeypatch):
    spec = SpeculativeConfig(draft_sampling=draft_sampling)
    with Engine(PAIR, method, spec, **PARALLEL[method]) as engine:
        assert_exact(engine, SAMPLINGS[sampling], 2, monkeypatch)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("method", ["sd", "specbranch"])
def test_every_draft_policy_is_exact(method, policy, monkeypatch):
    """Caps are given (not measured) so that every run drafts alike; tapout's arms are tried in
    order on a fresh policy, so its time-based rewards never decide within one generation."""
    cap = {"fixed": "", "heuristic": "", "cost": ":length=2"}.get(policy, ":cap=2")
    spec = SpeculativeConfig(gamma=2, draft_policy=policy + cap)
    options = PARALLEL.get(method, {})
    length = 3 if method == "sd" else 2
    assert_exact(lambda: Engine(PAIR, method, spec, **options), SAMPLINGS["t0.7"], length, monkeypatch)


@pytest.mark.parametrize("sampling", ["t1", "topp0.8"])
@pytest.mark.parametrize("label", list(HradClass))
def test_hrad_with_each_class_forced_is_exact(label, sampling, monkeypatch):
    params = SAMPLINGS[sampling]
    predictor = forced_predictor(PAIR, 1, int(label))
    predictor.meta.modes = ("greedy", "sampled")  # act at temperature > 0 too
    config = ParallelConfig(**PARALLEL["specbranch"])
    decoder = build_parallel(PAIR, "specbranch", SpeculativeConfig(), config, PredictorKeeper(predictor))
    with Engine.from_decoder(PAIR, "specbranch", decoder) as engine:
        assert_exact(engine, params, 2, monkeypatch)


def test_the_cases_branch_and_keep_pending_tokens(monkeypatch):
    """The parallel cases exercise what they claim to: several roots, a pending block U."""
    with Engine(PAIR, "specbranch", **PARALLEL["specbranch"]) as engine:
        oracle = Enumerator()
        install(monkeypatch, oracle)
        config = GenerationConfig(max_new_tokens=2, sampling=SAMPLINGS["t1"], ignore_eos=True)
        seen = {"roots": 0, "verified": 0}

        def run() -> tuple:
            result = engine.generate(PROMPT, config)
            seen["verified"] = max(seen["verified"], result.metrics.verified_tokens)
            seen["roots"] = max(seen["roots"], result.metrics.drafted_tokens_total)
            return tuple(result.token_ids)

        oracle.distribution(run)
    assert seen["verified"] >= 2 and seen["roots"] >= 3


@pytest.mark.parametrize("method", ["sd", "pearl", "specbranch"])
def test_every_accept_test_draws_a_fresh_uniform(method, monkeypatch):
    """Within a block (SD's 2-token block), between the pending block and the branch point
    (round 2 of the parallel methods verifies U, then the roots) and across rounds: each
    accept/reject test compares its own uniform, and every uniform drawn decides one test."""
    options = PARALLEL.get(method, {})
    with Engine(PAIR, method, SpeculativeConfig(gamma=2), **options) as engine:
        _, oracle = exact(engine, SAMPLINGS["t1"], 3 if method == "sd" else 2, monkeypatch)
    assert oracle.reused == 0
    assert oracle.tests == oracle.uniforms > oracle.runs  # more than one test per run on average
