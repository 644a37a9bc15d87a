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

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from helpers import exact_sequence_distribution, forced_predictor, make_pair, perturbed, tiny_model
from oracle import Enumerator, install, max_difference

from specbranch.config import GenerationConfig, ParallelConfig, SamplingParams, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.hrad.classes import HradClass
from specbranch.hrad.keeper import PredictorKeeper
from specbranch.metrics import GenerationMetrics
from specbranch.policies import POLICIES
from specbranch.runtime import build_parallel
from specbranch.sampling import process_logits
from specbranch.verify import DETERMINISTIC, SAMPLED, SIBLING

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


@dataclass
class Enumerated:
    """What an enumeration found: the exact distribution of the first tokens (`got`), the
    oracle, the metrics of every run merged (`metrics`: `verify_tests` says which paths through
    the rules ran, the H-RAD and tree counters which decisions were taken), the origins of every
    committed token, and in how many runs each kind of test ran at least once (`runs_with`)."""

    got: dict
    oracle: Enumerator
    metrics: GenerationMetrics
    origins: Counter
    runs_with: Counter

    @property
    def tests(self) -> dict[str, int]:
        return self.metrics.verify_tests


def exact(
    engine: EngineOrFactory, sampling: SamplingParams, length: int, monkeypatch, prompt: list[int] = PROMPT
) -> Enumerated:
    """The exact distribution of the first `length` tokens after `prompt`, and what the runs did.

    engine: one engine for every run, or a factory called per run (a draft-length policy learns
    across requests, so its runs need fresh state to be deterministic given their outcomes).
    """
    oracle = Enumerator()
    install(monkeypatch, oracle)
    config = GenerationConfig(max_new_tokens=length, sampling=sampling, ignore_eos=True)
    found = Enumerated({}, oracle, GenerationMetrics(), Counter(), Counter())

    def run() -> tuple[int, ...]:
        fresh = engine if isinstance(engine, Engine) else engine()
        result = fresh.generate(prompt, config)
        found.metrics.merge(result.metrics)
        found.origins.update(result.origins)
        found.runs_with.update(result.metrics.verify_tests)
        return tuple(result.token_ids)

    found.got = oracle.distribution(run)
    monkeypatch.undo()
    return found


def target_distribution(sampling: SamplingParams, length: int, prompt: list[int] = PROMPT) -> dict:
    process = lambda logits: process_logits(logits, sampling)  # noqa: E731
    return exact_sequence_distribution(TARGET, prompt, length, process)


def assert_exact(
    engine: EngineOrFactory, sampling: SamplingParams, length: int, monkeypatch, prompt: list[int] = PROMPT
) -> Enumerated:
    """The engine's exact distribution equals the target's, every uniform decides one test, and
    the runs took more than one random path; what the runs did, for the caller's path checks."""
    found = exact(engine, sampling, length, monkeypatch, prompt)
    assert max_difference(found.got, target_distribution(sampling, length, prompt)) < TOLERANCE
    assert found.oracle.reused == 0, "a uniform decided two accept/reject tests"
    assert found.oracle.runs > 1
    return found


def assert_ran(found: Enumerated, *kinds: str) -> None:
    """Each kind of verification test (`verify.TESTS`) ran in some generation of the enumeration:
    the path a test claims to cover was taken, whatever its prompt, budget or defaults."""
    missing = [kind for kind in kinds if not found.runs_with[kind]]
    assert not missing, f"no generation ran a {missing} test (ran: {dict(found.tests)})"


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=list(SAMPLINGS))
def test_sd_is_exact(sampling, draft_sampling, monkeypatch):
    spec = SpeculativeConfig(gamma=2, draft_sampling=draft_sampling)
    found = assert_exact(Engine(PAIR, "sd", spec), SAMPLINGS[sampling], 3, monkeypatch)
    assert_ran(found, SAMPLED if draft_sampling == "sample" else DETERMINISTIC)


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=list(SAMPLINGS))
@pytest.mark.parametrize("method", PARALLEL)
def test_parallel_methods_are_exact(method, sampling, draft_sampling, monkeypatch):
    spec = SpeculativeConfig(draft_sampling=draft_sampling)
    with Engine(PAIR, method, spec, **PARALLEL[method]) as engine:
        found = assert_exact(engine, SAMPLINGS[sampling], 2, monkeypatch)
    # A branch point verified (and, sampled, SpecBranch's later roots tested against residuals).
    assert found.metrics.branch_rounds > 0
    sampled = [SAMPLED] + [SIBLING] * (method == "specbranch")
    assert_ran(found, *([DETERMINISTIC] if draft_sampling == "greedy" else sampled))


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
        found = assert_exact(engine, params, 2, monkeypatch)
    assert getattr(found.metrics, label.counter) > 0, "the forced class never decided a branch"


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
        oracle = exact(engine, SAMPLINGS["t1"], 3 if method == "sd" else 2, monkeypatch).oracle
    assert oracle.reused == 0
    assert oracle.tests == oracle.uniforms > oracle.runs  # more than one test per run on average
