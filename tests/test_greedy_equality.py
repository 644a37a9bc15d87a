"""Greedy output of every speculative method equals autoregressive greedy output, token for token."""

from __future__ import annotations

import pytest
from helpers import make_pair, perturbed, tiny_model

from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.engine import generate

TARGET = tiny_model(seed=1)
DRAFTS = {
    "same": TARGET,
    "perturbed": perturbed(TARGET, 0.01, seed=2),
    "independent": tiny_model(seed=3),
}
PROMPTS = [[5], [3, 17, 42, 8, 8, 1, 60, 22, 9]]


def ar_tokens(prompt: list[int], n: int, model=TARGET) -> list[int]:
    pair = make_pair(model, None)
    return generate(pair, prompt, "ar", GenerationConfig(max_new_tokens=n)).token_ids


@pytest.mark.parametrize("draft_name", list(DRAFTS))
@pytest.mark.parametrize("draft_sampling", ["greedy", "sample"])
@pytest.mark.parametrize("gamma", [1, 3, 6])
@pytest.mark.parametrize("prompt", PROMPTS, ids=["len1", "len9"])
def test_sd_greedy_equals_ar(draft_name, draft_sampling, gamma, prompt):
    pair = make_pair(TARGET, DRAFTS[draft_name])
    spec = SpeculativeConfig(gamma=gamma, draft_sampling=draft_sampling)
    result = generate(pair, prompt, "sd", GenerationConfig(max_new_tokens=40), spec)
    assert result.token_ids == ar_tokens(prompt, 40)
    assert result.metrics.new_tokens == 40


def test_eos_inside_accepted_block_stops_like_ar():
    # Pick as EOS a token AR emits mid-way, so SD meets it inside an accepted block.
    prompt = PROMPTS[1]
    reference = ar_tokens(prompt, 30)
    eos = reference[12]
    first = reference.index(eos)
    target = tiny_model(seed=1, eos=eos)
    pair = make_pair(target, target)
    for method, spec in [("ar", None), ("sd", SpeculativeConfig(gamma=6, draft_sampling="greedy"))]:
        result = generate(pair, prompt, method, GenerationConfig(max_new_tokens=30), spec)
        assert result.token_ids == reference[: first + 1]
        assert result.finish_reason == "stop"
    # With a draft equal to the target every token is accepted: EOS sat inside the block.
    assert result.metrics.acceptance_rate == 1.0


def test_context_window_caps_generation():
    target = tiny_model(seed=1, max_positions=20)
    pair = make_pair(target, perturbed(target, 0.01, seed=2))
    prompt = PROMPTS[1]
    ar = generate(pair, prompt, "ar", GenerationConfig(max_new_tokens=50))
    sd = generate(pair, prompt, "sd", GenerationConfig(max_new_tokens=50), SpeculativeConfig(gamma=5))
    assert len(ar.token_ids) == 20 - len(prompt)
    assert sd.token_ids == ar.token_ids
    assert sd.finish_reason == ar.finish_reason == "length"
