"""Prompt lookup (`decoders/lookup.py`) and `--method lookup` (the target alone):

- the proposer: the longest context suffix with an earlier occurrence wins, the most recent
  occurrence of it, at most `num_tokens` proposed, none without a match;
- greedy output equals AR's token for token (prompts that repeat, so candidates are accepted);
- sampled output has exactly the target's distribution of its first tokens (the enumerating
  oracle over every random outcome, `oracle.py`), at temperature 1 and with top-k.

And lookup branches in SpecBranch's serial trees (`--lookup`): greedy output equal to AR's with
partly aligned and unaligned drafts, sampled output exactly the target's (lookup's
deterministic nodes beside sampled children), more tokens per round where the draft is poor,
and the gate spending no lookup node on a request whose lookup nodes are never accepted (the
trie the draft is shown: test_tree_lookup.py).

And `sd --lookup`: lookup candidates opening SD's draft block keep greedy output equal to AR's
and the exact distribution (rule 1 with a point mass beside sampled drafts); "auto" uses them
while their acceptance rate is at least the draft's, learnt from every round (`matches`:
candidate against committed token, whether verified or not).
"""

from __future__ import annotations

import pytest
from helpers import make_pair, perturbed, tiny_model
from test_exact_distribution import PAIR as SMALL_PAIR
from test_exact_distribution import SAMPLINGS, TARGET, assert_exact, assert_ran, exact
from test_tree_decoder import WIDE

from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.costs import CostCurve, Placement
from specbranch.decoders.base import PlanClock
from specbranch.decoders.lookup import lookup_candidates, lookup_continuations, matches
from specbranch.decoders.tree_lookup import GATE_DECAY, LookupRates
from specbranch.decoders.tree_round import TreeRound
from specbranch.engine import Engine
from specbranch.errors import SpecBranchError
from specbranch.estimators import AcceptanceRate
from specbranch.metrics import DRAFT, LOOKUP
from specbranch.runtime import assembly
from specbranch.verify import DETERMINISTIC, MIXED, POINT_MASS, SIBLING


def test_the_longest_suffix_with_an_earlier_occurrence_wins():
    context = [1, 2, 3, 4, 9, 2, 3, 5, 6, 1, 2, 3]
    assert lookup_candidates(context, max_ngram=3, num_tokens=3) == [4, 9, 2]  # [1, 2, 3], not [2, 3]
    assert lookup_candidates(context, max_ngram=2, num_tokens=3) == [5, 6, 1]  # [2, 3]: the most recent


def test_the_most_recent_occurrence_and_the_token_cap():
    context = [2, 3, 4, 7, 2, 3, 5, 2, 3]
    assert lookup_candidates(context, max_ngram=2, num_tokens=2) == [5, 2]
    assert lookup_candidates(context, max_ngram=2, num_tokens=10) == [5, 2, 3]


def test_continuations_of_other_occurrences_follow_in_the_same_order():
    context = [1, 2, 3, 4, 9, 2, 3, 5, 6, 1, 2, 3]
    assert lookup_continuations(context, 3, 3, count=1) == [lookup_candidates(context, 3, 3)]
    # [1, 2, 3] once, then [2, 3] at its two other occurrences, most recent first; [3] adds nothing new
    assert lookup_continuations(context, 3, 3, count=5) == [[4, 9, 2], [5, 6, 1]]
    assert lookup_continuations([7, 8, 7, 9, 7], 3, 2, count=3) == [[9, 7], [8, 7]]


@pytest.mark.parametrize("context", [[], [5], [1, 2, 3], [4, 4]])
def test_no_earlier_occurrence_proposes_nothing(context):
    expected = [4] if context == [4, 4] else []  # [4] occurs earlier, followed by 4
    assert lookup_candidates(context) == expected


REPEATING = [[3, 17, 42, 8, 8, 1, 60, 22, 9, 3, 17, 42, 8], [5, 6, 5, 6, 5, 6, 5]]
LOOKUP_PROMPT = [1, 2, 1, 2, 1]  # repeats: lookup proposes from the first round on


@pytest.mark.parametrize("prompt", REPEATING)
def test_lookup_greedy_output_equals_ar(prompt):
    pair = make_pair(tiny_model(seed=1), None)  # no draft model at all
    config = GenerationConfig(max_new_tokens=40)
    result = Engine(pair, "lookup").generate(prompt, config)
    assert result.token_ids == Engine(pair, "ar").generate(prompt, config).token_ids
    assert result.metrics.accepted_tokens > 0 and result.metrics.mean_accepted_length > 1.0


@pytest.mark.parametrize("sampling", ["t0.7", "topk2"])
def test_lookup_sampled_output_is_exactly_the_targets(sampling, monkeypatch):
    engine = Engine(make_pair(TARGET, None), "lookup")
    found = assert_exact(engine, SAMPLINGS[sampling], 3, monkeypatch, LOOKUP_PROMPT)
    assert found.origins[LOOKUP] > 0  # candidates were verified and accepted


def test_lookup_takes_no_draft_options():
    with pytest.raises(SpecBranchError, match="takes no option"):
        Engine(make_pair(TARGET, None), "lookup", k_max=2)


# Lookup branches inside SpecBranch's serial trees (`TreeDecoder._lookup`; the trie's own
# tests: test_tree_lookup.py).

GREEDY_TARGET = tiny_model(seed=1)
DRAFTS = {"partly-aligned": perturbed(GREEDY_TARGET, 0.01, seed=2), "unaligned": tiny_model(seed=7)}


def serial(
    pair, monkeypatch, draft_sampling: str = "sample", lookup: str = "on", costs=WIDE, **options
) -> Engine:
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: costs)
    spec = SpeculativeConfig(draft_sampling=draft_sampling)
    tree = {"tree_nodes": 12, "max_draft_len": 5} | options
    return Engine(pair, "specbranch", spec, execution="serial", lookup=lookup, **tree)


@pytest.mark.parametrize("lookup", ["on", "auto"])
@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("draft_name", list(DRAFTS))
def test_lookup_branches_keep_greedy_output_equal_to_ar(draft_name, draft_sampling, lookup, monkeypatch):
    pair = make_pair(GREEDY_TARGET, DRAFTS[draft_name])
    engine = serial(pair, monkeypatch, draft_sampling, lookup)
    config = GenerationConfig(max_new_tokens=40)
    for prompt in REPEATING:
        expected = Engine(make_pair(GREEDY_TARGET, None), "ar").generate(prompt, config).token_ids
        assert engine.generate(prompt, config).token_ids == expected


def test_lookup_branches_carry_tokens_an_unaligned_draft_misses(monkeypatch):
    pair = make_pair(GREEDY_TARGET, DRAFTS["unaligned"])
    config = GenerationConfig(max_new_tokens=40)
    with_lookup = serial(pair, monkeypatch, lookup="on").generate(REPEATING[1], config).metrics
    without = serial(pair, monkeypatch, lookup="off").generate(REPEATING[1], config).metrics
    assert with_lookup.mean_accepted_length > without.mean_accepted_length


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
def test_lookup_branches_keep_the_exact_distribution(sampling, draft_sampling, monkeypatch):
    """Every temperature, top-k and top-p. Sampled drafting puts lookup's deterministic nodes
    beside sampled children (the mixed rule, with later siblings tested against residuals:
    k_max 8 makes the draft branch); greedy drafting puts them beside the draft's top-k."""
    engine = serial(SMALL_PAIR, monkeypatch, draft_sampling, tree_nodes=4, max_draft_len=2, k_max=8)
    found = assert_exact(engine, SAMPLINGS[sampling], 2, monkeypatch, LOOKUP_PROMPT)
    assert found.origins[LOOKUP] > 0
    assert_ran(found, *([MIXED, SIBLING] if draft_sampling == "sample" else [DETERMINISTIC]))


def test_lookup_branches_keep_the_exact_distribution_over_two_rounds(monkeypatch):
    """Three tokens from larger trees (N 12, D 5): the second round's tree, lookup again below
    drafted nodes and the rates the first round taught, at a temperature other than 1."""
    engine = serial(SMALL_PAIR, monkeypatch, "sample")
    found = assert_exact(engine, SAMPLINGS["t1.3"], 3, monkeypatch, LOOKUP_PROMPT)
    assert found.metrics.target_forwards > found.oracle.runs  # runs that took a second round
    assert_ran(found, MIXED, SIBLING)


COSTLY = Placement(  # a verify slot costs
    *(CostCurve(((1, s), (64, 4 * s))) for s in (1.0, 0.02, 1.0, 0.02)), correct=False
)


@pytest.mark.parametrize(("accepted", "grafted"), [(0, False), (50, True)])
def test_the_gate_spends_lookup_nodes_only_where_they_are_accepted(accepted, grafted, monkeypatch):
    engine = serial(SMALL_PAIR, monkeypatch, lookup="auto", costs=COSTLY)
    decoder = engine.decoder
    request = decoder.start(LOOKUP_PROMPT, SAMPLINGS["t1"], 0)
    request.lookup_rates = LookupRates(*(AcceptanceRate(50.0, float(accepted)) for _ in range(3)))
    rnd = TreeRound(request, decoder.limits, reach=3, clock=PlanClock())
    assert (len(decoder._lookup_trie(rnd, -1, 1).tokens) > 0) == grafted


@pytest.mark.parametrize(
    ("candidates", "committed", "expected"),
    [([4, 5, 6], [4, 5, 9, 1], (3, 2)), ([4, 5], [4, 5, 9], (2, 2)), ([4, 5, 6], [4], (1, 1)),
     ([7], [4, 5], (1, 0)), ([], [4], (0, 0))],
)
def test_matches_counts_the_common_prefix_and_the_first_mismatch(candidates, committed, expected):
    assert matches(candidates, committed) == expected


def test_the_gate_learns_lookup_acceptance_from_rounds_that_spent_nothing_on_it(monkeypatch):
    """A closed gate (no lookup node pays) still compares the candidates with the committed
    tokens, so it can reopen where the text starts repeating."""
    decoder = serial(SMALL_PAIR, monkeypatch, lookup="auto", costs=COSTLY).decoder
    request = decoder.start(LOOKUP_PROMPT, SAMPLINGS["t1"], 0)
    request.lookup_rates.gate = AcceptanceRate(tests=50.0, hits=0.0, decay=GATE_DECAY)
    decoder.step(request, 8)
    assert request.lookup_rates.gate.tests > GATE_DECAY * 50.0  # tested without a lookup node


# `sd --lookup`: candidates opening SD's draft block.


def sd(pair, lookup: str, draft_sampling: str = "sample", gamma: int = 3) -> Engine:
    return Engine(pair, "sd", SpeculativeConfig(gamma=gamma, draft_sampling=draft_sampling), lookup=lookup)


@pytest.mark.parametrize("lookup", ["on", "auto"])
@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
@pytest.mark.parametrize("draft_name", list(DRAFTS))
def test_sd_with_lookup_keeps_greedy_output_equal_to_ar(draft_name, draft_sampling, lookup):
    engine = sd(make_pair(GREEDY_TARGET, DRAFTS[draft_name]), lookup, draft_sampling)
    config = GenerationConfig(max_new_tokens=40)
    for prompt in REPEATING:
        expected = Engine(make_pair(GREEDY_TARGET, None), "ar").generate(prompt, config).token_ids
        assert engine.generate(prompt, config).token_ids == expected


SD_MIXED_PROMPT = [3, 1, 1]  # lookup proposes one token (the 1 after the first 1): drafts fill the block


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
def test_sd_with_lookup_keeps_the_exact_distribution(sampling, draft_sampling, monkeypatch):
    """Lookup tokens then drafts in one block. Sampled drafts: rule 1 with the lookup tokens'
    point masses, asserted to run (rounds that mixed lookup and draft tokens, `POINT_MASS`
    tests; with a prompt whose candidates filled the room there would be none)."""
    engine = sd(SMALL_PAIR, "on", draft_sampling, gamma=3)
    found = assert_exact(engine, SAMPLINGS[sampling], 3, monkeypatch, SD_MIXED_PROMPT)
    assert found.origins[LOOKUP] > 0 and found.origins[DRAFT] > 0
    assert_ran(found, POINT_MASS if draft_sampling == "sample" else DETERMINISTIC)


def test_the_mixed_round_check_fails_where_lookup_fills_the_block(monkeypatch):
    """The path check is not vacuous: on a prompt whose candidates fill a 3-token budget's room,
    no round mixes lookup and draft tokens, and `assert_ran` says so."""
    found = exact(sd(SMALL_PAIR, "on", gamma=3), SAMPLINGS["t1"], 3, monkeypatch, LOOKUP_PROMPT)
    assert found.runs_with[POINT_MASS] == 0
    with pytest.raises(AssertionError, match="point-mass"):
        assert_ran(found, POINT_MASS)


def test_sd_lookup_carries_tokens_an_unaligned_draft_misses():
    pair = make_pair(GREEDY_TARGET, DRAFTS["unaligned"])
    config = GenerationConfig(max_new_tokens=40)
    with_lookup = sd(pair, "auto").generate(REPEATING[1], config).metrics
    without = sd(pair, "off").generate(REPEATING[1], config).metrics
    assert with_lookup.mean_accepted_length > without.mean_accepted_length


def test_sd_auto_uses_lookup_only_while_it_is_accepted_at_least_as_often_as_the_draft():
    decoder = sd(make_pair(GREEDY_TARGET, DRAFTS["unaligned"]), "auto").decoder
    request = decoder.start(LOOKUP_PROMPT, SAMPLINGS["t1"], 0)
    request.lookup_rate, request.draft_rate = AcceptanceRate(10.0, 1.0), AcceptanceRate(10.0, 8.0)
    assert decoder._fixed(request, [1, 2]) == []
    request.lookup_rate = AcceptanceRate(10.0, 9.0)
    assert decoder._fixed(request, [1, 2]) == [1, 2]


def test_sd_takes_lookup_but_no_parallel_options():
    with pytest.raises(SpecBranchError, match="takes no option"):
        Engine(SMALL_PAIR, "sd", k_max=2)
