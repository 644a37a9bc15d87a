"""Greedy output of PEARL and SpecBranch equals autoregressive greedy output, token for token.

Inline (serial reference) over many settings; two-process (a real draft worker over gloo) over
a representative subset. Drafts: identical to the target (aligned), slightly perturbed (about
half the tokens accepted) and independent (almost nothing accepted).
"""

from __future__ import annotations

import pytest
from helpers import make_pair, perturbed, tiny_model

from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.engine import Engine, generate

TARGET = tiny_model(seed=1)
DRAFTS = {
    "aligned": TARGET,
    "partly-aligned": perturbed(TARGET, 0.01, seed=2),
    "unaligned": tiny_model(seed=3),
}
PROMPTS = [[5], [3, 17, 42, 8, 8, 1, 60, 22, 9]]
SETTINGS = [
    ("pearl", {"max_draft_len": 1}),
    ("pearl", {"max_draft_len": 3}),
    ("pearl", {"max_draft_len": 6}),
    ("specbranch", {"execution": "parallel", "k_max": 1, "epsilon": 0.0, "max_draft_len": 4}),
    ("specbranch", {"execution": "parallel", "k_max": 3, "epsilon": 0.0, "max_draft_len": 2}),
    ("specbranch", {"execution": "parallel", "k_max": 4, "epsilon": 0.3, "max_draft_len": 5}),
    ("specbranch", {"execution": "parallel", "k_max": 8, "epsilon": 0.6, "max_draft_len": 8}),
]


def ar_tokens(prompt: list[int], n: int, model=TARGET) -> list[int]:
    return generate(make_pair(model, None), prompt, "ar", GenerationConfig(max_new_tokens=n)).token_ids


@pytest.mark.parametrize("draft_name", list(DRAFTS))
@pytest.mark.parametrize("method,options", SETTINGS, ids=[f"{m}-{o}" for m, o in SETTINGS])
@pytest.mark.parametrize("draft_sampling", ["greedy", "sample"])
def test_inline_greedy_equals_ar(draft_name, method, options, draft_sampling):
    spec = SpeculativeConfig(draft_sampling=draft_sampling)
    with Engine(make_pair(TARGET, DRAFTS[draft_name]), method, spec, inline=True, **options) as engine:
        for prompt in PROMPTS:
            result = engine.generate(prompt, GenerationConfig(max_new_tokens=40))
            assert result.token_ids == ar_tokens(prompt, 40)


@pytest.mark.parametrize("draft_name", ["aligned", "partly-aligned", "unaligned"])
@pytest.mark.parametrize(
    "method,options",
    [("pearl", {"max_draft_len": 4}), ("specbranch", {"execution": "parallel", "k_max": 4, "epsilon": 0.3})],
)
def test_two_process_greedy_equals_ar(draft_name, method, options):
    with Engine(make_pair(TARGET, DRAFTS[draft_name]), method, **options) as engine:
        for prompt in PROMPTS:
            result = engine.generate(prompt, GenerationConfig(max_new_tokens=40))
            assert result.token_ids == ar_tokens(prompt, 40)


def test_branches_are_really_exercised():
    """With an unsure draft SpecBranch drafts several branches and some rounds hit a non-top root."""
    pair = make_pair(TARGET, DRAFTS["partly-aligned"])
    with Engine(pair, "specbranch", execution="parallel", inline=True, k_max=8, epsilon=0.0) as engine:
        metrics = engine.generate(PROMPTS[1], GenerationConfig(max_new_tokens=40)).metrics
    assert metrics.drafted_tokens_total > metrics.drafted_tokens
    assert 0 < metrics.branch_hits <= metrics.branch_rounds


@pytest.mark.parametrize(
    "method,options", [("pearl", {}), ("specbranch", {"execution": "parallel", "k_max": 4, "epsilon": 0.0})]
)
@pytest.mark.parametrize("inline", [True, False])
def test_eos_inside_a_branch_stops_like_ar(method, options, inline):
    # EOS = a token AR emits mid-way: with an aligned draft it is drafted inside a branch.
    prompt = PROMPTS[1]
    reference = ar_tokens(prompt, 30)
    eos = reference[12]
    target = tiny_model(seed=1, eos=eos)
    expected = reference[: reference.index(eos) + 1]
    pair = make_pair(target, target)
    with Engine(pair, method, inline=inline, max_draft_len=8, **options) as engine:
        result = engine.generate(prompt, GenerationConfig(max_new_tokens=30))
    assert result.token_ids == expected
    assert result.finish_reason == "stop"
    assert result.metrics.acceptance_rate == 1.0


@pytest.mark.parametrize("method", ["pearl", "specbranch"])
def test_context_window_caps_generation(method):
    target = tiny_model(seed=1, max_positions=20)
    pair = make_pair(target, perturbed(target, 0.01, seed=2))
    prompt = PROMPTS[1]
    ar = generate(pair, prompt, "ar", GenerationConfig(max_new_tokens=50))
    options = {"execution": "parallel"} if method == "specbranch" else {}
    config = GenerationConfig(max_new_tokens=50)
    result = generate(pair, prompt, method, config, inline=True, max_draft_len=6, **options)
    assert len(ar.token_ids) == 20 - len(prompt)
    assert result.token_ids == ar.token_ids
