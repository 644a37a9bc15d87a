"""Request state lives apart from the decoder: two requests planned and settled interleaved give
each exactly the tokens it gets alone (`decoders/base.py`: plan -> target forward -> settle).

For every serial method (ar, sd with lookup, lookup, serial SpecBranch trees with lookup), two
requests with different prompts, seeds and sampling are advanced round by round: both plan
(each plan moves its own KV sequences), one `Backend.forward` runs both target feeds, both
settle. Each request's tokens equal those of a generation of it alone, sampled ones included, so
neither reads or writes the other's caches, generators, calibration, rates or counters.

And device placement: the draft and the target as separate models of different dtypes (float32
draft, float64 target) keep greedy output equal to AR's and the exact distribution; the
serial paths run on CUDA when it is present (skipped otherwise).
"""

from __future__ import annotations

import pytest
import torch
from helpers import make_pair, perturbed, tiny_model
from test_exact_distribution import SAMPLINGS, TARGET, assert_exact, assert_ran
from test_tree_decoder import WIDE

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.decoders.base import plan_alone
from specbranch.engine import Engine
from specbranch.runtime import assembly
from specbranch.verify import MIXED, POINT_MASS

MODEL = tiny_model(seed=1)
PAIR = make_pair(MODEL, perturbed(MODEL, 0.05, seed=2))
TREE = {"execution": "serial", "tree_nodes": 12, "max_draft_len": 5, "k_max": 8, "lookup": "on"}
METHODS = {
    "ar": ("ar", {}, {}),
    "sd": ("sd", {"gamma": 4}, {"lookup": "on"}),
    "lookup": ("lookup", {}, {}),
    "tree": ("specbranch", {}, TREE),
}
REQUESTS = [  # prompt, sampling, seed
    ([3, 17, 42, 8, 8, 1, 60, 22, 9, 3, 17, 42], SamplingParams(temperature=0.8, top_p=0.95), 7),
    ([5, 6, 5, 6, 5, 6, 5], SamplingParams(temperature=1.3, top_k=20), 11),
]
TOKENS = 20


def engine(method: str, pair, monkeypatch) -> Engine:
    name, spec, options = METHODS[method]
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)
    return Engine(pair, name, SpeculativeConfig(**spec), **options)


def interleaved(decoder) -> list[list[int]]:
    """REQUESTS advanced together: every round both plan, one forward runs both feeds, both settle."""
    requests = [decoder.start(prompt, sampling, seed) for prompt, sampling, seed in REQUESTS]
    outputs: list[list[int]] = [[] for _ in requests]
    while any(len(out) < TOKENS for out in outputs):
        live = [i for i, out in enumerate(outputs) if len(out) < TOKENS]
        proposals = {i: plan_alone(decoder.plan(requests[i], TOKENS - len(outputs[i]))) for i in live}
        backend = requests[0].target.backend
        logits = backend.forward([proposals[i].feed for i in live])
        for i, rows in zip(live, logits, strict=True):
            outputs[i] += decoder.settle(requests[i], proposals[i], rows).committed
    return [out[:TOKENS] for out in outputs]


@pytest.mark.parametrize("method", METHODS)
def test_interleaved_requests_get_the_tokens_they_get_alone(method, monkeypatch):
    run = engine(method, PAIR, monkeypatch)
    alone = [
        run.generate(prompt, GenerationConfig(TOKENS, sampling, seed, ignore_eos=True)).token_ids
        for prompt, sampling, seed in REQUESTS
    ]
    assert interleaved(run.decoder) == alone
    assert alone[0] != alone[1]


FLOAT32_DRAFT = perturbed(TARGET, 0.15, seed=1).to(torch.float32)  # TARGET is float64
MIXED_DTYPES = make_pair(TARGET, FLOAT32_DRAFT)


@pytest.mark.parametrize(
    ("method", "prompt", "path"),
    [("sd", [3, 1, 1], POINT_MASS), ("tree", [1, 2, 1, 2, 1], MIXED)],
)
def test_a_draft_of_another_dtype_keeps_the_exact_distribution(method, prompt, path, monkeypatch):
    name, spec, options = METHODS[method]
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)
    options = options | ({"tree_nodes": 4, "max_draft_len": 2} if method == "tree" else {})
    run = Engine(MIXED_DTYPES, name, SpeculativeConfig(**(spec | {"gamma": 3})), **options)
    length = 3 if method == "sd" else 2
    assert_ran(assert_exact(run, SAMPLINGS["t0.7"], length, monkeypatch, prompt), path)


@pytest.mark.parametrize("method", ["sd", "tree"])
def test_a_draft_of_another_dtype_keeps_greedy_output_equal_to_ar(method, monkeypatch):
    pair = make_pair(MODEL, perturbed(MODEL, 0.01, seed=2).to(torch.float32))
    config = GenerationConfig(max_new_tokens=30)
    expected = Engine(make_pair(MODEL, None), "ar").generate(REQUESTS[0][0], config).token_ids
    assert engine(method, pair, monkeypatch).generate(REQUESTS[0][0], config).token_ids == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("draft_device", ["cuda", "cpu"])
def test_serial_paths_run_on_cuda(method, draft_device, monkeypatch):
    """Target on CUDA, the draft on CUDA or on the CPU: greedy output equals AR's on the CPU,
    and sampled generation runs (generators, p and q rows on the right devices)."""
    target = tiny_model(seed=1).to(torch.float32)
    draft = perturbed(target, 0.01, seed=2).to(draft_device)
    pair = make_pair(target.to("cuda"), draft)
    config = GenerationConfig(max_new_tokens=24)
    expected = Engine(make_pair(tiny_model(seed=1).to(torch.float32), None), "ar").generate([5, 6, 5], config)
    run = engine(method, pair, monkeypatch)
    assert run.generate([5, 6, 5], config).token_ids == expected.token_ids
    sampled = GenerationConfig(max_new_tokens=24, sampling=REQUESTS[0][1], seed=3)
    assert len(run.generate([5, 6, 5], sampled).token_ids) == 24
