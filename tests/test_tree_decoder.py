"""SpecBranch's serial execution (`--execution serial`: a draft token tree verified in one target
forward, `decoders/tree.py`) is exact.

- Greedy: token for token equal to AR with aligned, partly aligned and unaligned drafts, with
  deterministic and sampled children, EOS inside the tree, and trees cut by the token budget and
  by the context window.
- Sampled: the exact distribution of the first tokens (the enumerating oracle, `oracle.py`, over
  every random outcome: the drafted children included) equals the processed target's, with
  deterministic (rule 3) and sampled (rule 4, without replacement) children, at temperatures
  0.7, 1 and 1.3, with top-k and with top-p; every uniform decides one test.
- A chi-square check on the real engine with per-position counts, at temperatures 0.7 and 1.3
  with top-p and top-k, with and without lookup's nodes in the tree: N = 3200 seeds and 8 tokens
  give power >= 0.9 against any deviation of total variation >= 0.05 at alpha = 1e-3 for the
  first token (`stats.detectable_tv`), >= 0.1 for the second given the likeliest first.

Each case asserts that the paths it claims ran (`verify.TESTS` kinds counted in the metrics:
a later sampled child tested against its siblings' residual, a mixed node, a lookup token
committed), so a change of prompt, budget or default cannot turn it into a test of less.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import make_pair, perturbed, tiny_model
from stats import chi_square_pvalue, detectable_tv
from test_exact_distribution import PAIR as SMALL_PAIR
from test_exact_distribution import SAMPLINGS, assert_exact, assert_ran
from test_parallel_greedy_equality import DRAFTS, PROMPTS, TARGET

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.costs import CostCurve, Placement
from specbranch.engine import Engine
from specbranch.metrics import LOOKUP
from specbranch.runtime import assembly
from specbranch.sampling import process_logits
from specbranch.verify import DETERMINISTIC, MIXED, SAMPLED, SIBLING

SERIAL = {"execution": "serial", "tree_nodes": 12, "max_draft_len": 5, "k_max": 4}

# Cost curves under which trees pay (a verify slot and a draft level cost little next to a
# target forward): the engines here size their trees by the throughput model with these, so
# the tests exercise the sizing and never depend on this machine's timings.
WIDE = Placement(*(CostCurve(((1, s), (64, 1.1 * s))) for s in (1.0, 0.02, 1.0, 0.02)), correct=False)


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


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
def test_k_max_beyond_the_vocabulary_gives_a_node_at_most_every_token(draft_sampling):
    """A flat draft on a 4-token vocabulary with k_max 16 asks for up to 15 children: capped at 4."""
    target = tiny_model(vocab=4, seed=0, layers=1, hidden=16, init=0.3)
    pair = make_pair(target, tiny_model(vocab=4, seed=3, layers=1, hidden=16, init=0.01))
    engine = serial(pair, draft_sampling, k_max=16, lookup="off")
    result = engine.generate([1, 2, 3], GenerationConfig(max_new_tokens=12))
    assert result.token_ids == ar_tokens(pair, [1, 2, 3], 12)
    assert result.metrics.mean_tree_size > 3


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


CASES = [(d, s, 2) for d in ("sample", "greedy") for s in SAMPLINGS] + [("sample", "t1.3", 3)]


@pytest.mark.parametrize(("draft_sampling", "sampling", "length"), CASES)
def test_sampled_output_is_exactly_the_targets(draft_sampling, sampling, length, monkeypatch):
    """Every temperature, top-k and top-p: a side that processed its rows differently (the
    target's p, or the q rows children are tested against) shows at temperatures other than 1.
    Length 3 reaches the third token, whose distribution depends on which sampled children
    a full tree keeps at depth 2 (the case a selection that looks at the drawn tokens biases).
    k_max 8 at length 2: the draft (top probability about 0.54 here) branches, so nodes have several
    children (at length 3 the enumeration would take minutes; k_max 4 branches deeper in the tree)."""
    engine = Engine(
        SMALL_PAIR, "specbranch", SpeculativeConfig(draft_sampling=draft_sampling),
        execution="serial", tree_nodes=4, max_draft_len=2, k_max=8 if length == 2 else 4,
    )
    found = assert_exact(engine, SAMPLINGS[sampling], length, monkeypatch)
    assert found.oracle.tests == found.oracle.uniforms
    # Sampled children: a later one tested against the residual its earlier siblings left.
    assert_ran(found, *([SAMPLED, SIBLING] if draft_sampling == "sample" else [DETERMINISTIC]))
    if length == 3:  # the walk tested children at depth 2
        assert found.metrics.depth_tested[1] > 0


N = 3200
STAT_TARGET = tiny_model(vocab=8, seed=0, layers=1, hidden=16, init=0.3)


@torch.inference_mode()
def next_token(prefix: list[int], sampling: SamplingParams) -> dict:
    probs = process_logits(STAT_TARGET(torch.tensor([prefix])).logits[0, -1], sampling)
    return {(t,): float(p) for t, p in enumerate(probs) if p > 0}


STAT_CASES = {  # draft sampling, sampling, lookup, context, the paths the case must run
    "sampled-children-t0.7-top-p": ("sample", SamplingParams(0.7, top_p=0.9), "off", [1, 2, 3], (SIBLING,)),
    "top-k-children-t1.3-top-k": ("greedy", SamplingParams(1.3, top_k=5), "off", [1, 2, 3], (DETERMINISTIC,)),
    # a context that repeats: lookup's deterministic nodes beside the draft's children
    "lookup-beside-sampled-children-t1.3-top-k": (
        "sample", SamplingParams(1.3, top_k=5), "on", [1, 2, 3, 1, 2], (MIXED, SIBLING)
    ),
    "lookup-beside-top-k-children-t0.7-top-p": (
        "greedy", SamplingParams(0.7, top_p=0.9), "on", [1, 2, 3, 1, 2], (DETERMINISTIC, LOOKUP)
    ),
}


@pytest.mark.parametrize("case", STAT_CASES)
def test_the_tree_fits_the_target_per_position(case):
    draft_sampling, sampling, lookup, context, paths = STAT_CASES[case]
    pair = make_pair(STAT_TARGET, perturbed(STAT_TARGET, 0.15, seed=1))
    engine = serial(pair, draft_sampling, tree_nodes=6, max_draft_len=3, k_max=8, lookup=lookup)
    ran, outputs = Counter(), []
    for seed in range(N):
        result = engine.generate(context, GenerationConfig(2, sampling, seed))
        ran.update(result.metrics.verify_tests)
        ran.update(result.origins)
        outputs.append(tuple(result.token_ids))
    assert all(ran[path] for path in paths), f"{paths} did not all run: {dict(ran)}"
    first = next_token(context, sampling)
    assert detectable_tv(N, len(first) + 1) <= 0.05
    assert chi_square_pvalue(Counter(o[:1] for o in outputs), first, N) > 1e-3
    top = max(first, key=first.get)
    seconds = Counter(o[1:] for o in outputs if o[:1] == top)
    n2 = sum(seconds.values())
    assert detectable_tv(n2, 9) <= 0.1
    assert chi_square_pvalue(seconds, next_token(context + list(top), sampling), n2) > 1e-3
