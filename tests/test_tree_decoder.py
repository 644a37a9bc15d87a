"""SpecBranch's serial execution (`--execution serial`: a draft token tree verified in one target
forward, `decoders/tree.py`) is exact.

- Greedy: token for token equal to AR with aligned, partly aligned and unaligned drafts, with
  deterministic and sampled children, EOS inside the tree, and trees cut by the token budget and
  by the context window.
- Sampled: the exact distribution of the first tokens (the enumerating oracle, `oracle.py`, over
  every random outcome: the drafted children included) equals the processed target's, with
  deterministic (rule 3) and sampled (rule 4, without replacement) children, at temperature 1,
  0.7 with top-p, and with top-k; every uniform decides one test.
- A chi-square check on the real engine with per-position counts: N = 3200 seeds and 8 tokens
  give power >= 0.9 against any deviation of total variation >= 0.05 at alpha = 1e-3 for the
  first token (`stats.detectable_tv`), >= 0.1 for the second given the likeliest first.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import make_pair, perturbed, tiny_model
from oracle import Enumerator, install, max_difference
from stats import chi_square_pvalue, detectable_tv
from test_exact_distribution import PAIR as SMALL_PAIR
from test_exact_distribution import PROMPT as SMALL_PROMPT
from test_exact_distribution import SAMPLINGS, target_distribution
from test_parallel_greedy_equality import DRAFTS, PROMPTS, TARGET

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.costs import CostCurve, Placement
from specbranch.engine import Engine
from specbranch.runtime import assembly
from specbranch.sampling import process_logits

SERIAL = {"execution": "serial", "tree_nodes": 12, "max_draft_len": 5, "k_max": 4}

# Cost curves under which trees pay (a verify slot and a draft level cost little next to a
# target forward): the engines here size their trees by the throughput model with these, so
# the tests exercise the sizing and never depend on this machine's timings.
WIDE = Placement(*(CostCurve(((1, s), (64, 1.1 * s))) for s in (1.0, 0.02, 1.0, 0.02)))


@pytest.fixture(autouse=True)
def synthetic_costs(monkeypatch):
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)


def serial(pair, draft_sampling: str = "sample", **options) -> Engine:
    return Engine(pair, "specbranch", SpeculativeConfig(draft_sampling=draft_sampling), **(SERIAL | options))


def ar_tokens(pair, prompt: list[int], n: int) -> list[int]:
    return Engine(pair, "ar").generate(prompt, GenerationConfig(max_new_tokens=n)).token_ids


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("draft_name", DRAFTS)
def test_greedy_output_equals_ar(draft_name, draft_sampling):
    pair = make_pair(TARGET, DRAFTS[draft_name])
    engine = serial(pair, draft_sampling)
    for prompt in PROMPTS:
        result = engine.generate(prompt, GenerationConfig(max_new_tokens=40))
        assert result.token_ids == ar_tokens(pair, prompt, 40)
    if draft_name == "aligned":  # the tree really carries several tokens per target forward
        assert result.metrics.mean_accepted_length > 2.5


def test_eos_inside_the_tree_stops_like_ar():
    prompt = PROMPTS[1]
    eos = ar_tokens(make_pair(TARGET, None), prompt, 30)[12]
    target = tiny_model(seed=1, eos=eos)
    pair = make_pair(target, target)
    reference = ar_tokens(pair, prompt, 30)
    result = serial(pair).generate(prompt, GenerationConfig(max_new_tokens=30))
    assert result.token_ids == reference and reference[-1] == eos
    assert result.finish_reason == "stop"


@pytest.mark.parametrize("budget", [1, 2, 3, 7])
def test_the_token_budget_cuts_the_tree(budget):
    pair = make_pair(TARGET, DRAFTS["partly-aligned"])
    result = serial(pair).generate(PROMPTS[1], GenerationConfig(max_new_tokens=budget))
    assert result.token_ids == ar_tokens(pair, PROMPTS[1], budget)


def test_the_context_window_cuts_the_tree():
    target = tiny_model(seed=1, max_positions=20)
    pair = make_pair(target, perturbed(target, 0.01, seed=2))
    prompt = PROMPTS[1]
    result = serial(pair).generate(prompt, GenerationConfig(max_new_tokens=50))
    assert result.token_ids == ar_tokens(pair, prompt, 50)
    assert len(result.token_ids) == 20 - len(prompt)


CASES = [(d, s, 2) for d in ("sample", "greedy") for s in ("t1", "topp0.8", "topk2")] + [("sample", "t1", 3)]


@pytest.mark.parametrize(("draft_sampling", "sampling", "length"), CASES)
def test_sampled_output_is_exactly_the_targets(draft_sampling, sampling, length, monkeypatch):
    """Length 3 reaches the third token, whose distribution depends on which sampled children
    a full tree keeps at depth 2 (the case a selection that looks at the drawn tokens biases)."""
    params = SAMPLINGS[sampling]
    engine = Engine(
        SMALL_PAIR, "specbranch", SpeculativeConfig(draft_sampling=draft_sampling),
        execution="serial", tree_nodes=4, max_draft_len=2, k_max=4,
    )
    oracle = Enumerator()
    install(monkeypatch, oracle)
    config = GenerationConfig(max_new_tokens=length, sampling=params, ignore_eos=True)
    got = oracle.distribution(lambda: tuple(engine.generate(SMALL_PROMPT, config).token_ids))
    monkeypatch.undo()
    assert max_difference(got, target_distribution(params, length)) < 1e-6
    assert oracle.reused == 0 and oracle.tests == oracle.uniforms


N = 3200
STAT_TARGET = tiny_model(vocab=8, seed=0, layers=1, hidden=16, init=0.3)


@torch.inference_mode()
def next_token(prefix: list[int], sampling: SamplingParams) -> dict:
    probs = process_logits(STAT_TARGET(torch.tensor([prefix])).logits[0, -1], sampling)
    return {(t,): float(p) for t, p in enumerate(probs) if p > 0}


@pytest.mark.parametrize(
    ("draft_sampling", "sampling"),
    [("sample", SamplingParams(1.0, top_p=0.9)), ("greedy", SamplingParams(1.0, top_k=5))],
    ids=["sampled-children-top-p", "top-k-children-top-k"],
)
def test_the_tree_fits_the_target_per_position(draft_sampling, sampling):
    pair = make_pair(STAT_TARGET, perturbed(STAT_TARGET, 0.15, seed=1))
    context = [1, 2, 3]
    engine = serial(pair, draft_sampling, tree_nodes=6, max_draft_len=3)
    outputs = [tuple(engine.generate(context, GenerationConfig(2, sampling, s)).token_ids) for s in range(N)]
    first = next_token(context, sampling)
    assert detectable_tv(N, len(first) + 1) <= 0.05
    assert chi_square_pvalue(Counter(o[:1] for o in outputs), first, N) > 1e-3
    top = max(first, key=first.get)
    seconds = Counter(o[1:] for o in outputs if o[:1] == top)
    n2 = sum(seconds.values())
    assert detectable_tv(n2, 9) <= 0.1
    assert chi_square_pvalue(seconds, next_token(context + list(top), sampling), n2) > 1e-3
