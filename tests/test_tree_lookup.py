"""Prompt lookup inside SpecBranch's trees (`decoders/tree_lookup.py`, `TreeDecoder._lookup_trie`,
`_hang`, `_worth_verifying`), through the proposer seam (`decoders.proposer`: a test proposer
stands in for prompt lookup where the copies must be given):

- the draft sees a copy in the one forward it makes anyway and drafts past its end;
- a copy is cut where the draft disagrees, once such tokens have proved rarely accepted;
- of several copies, merged where they share a prefix, the tree keeps the one the draft agrees
  with;
- lookup tries again below drafted nodes, in the very trees the exactness tests of
  test_lookup.py run;
- the rates are learnt by agreement, up to the first mismatch, only from tries the walk reached;
- sampled children beside a lookup token are drawn without it (so they never repeat it).
"""

from __future__ import annotations

import pytest
import torch
from helpers import make_pair
from test_exact_distribution import PAIR as SMALL_PAIR
from test_exact_distribution import SAMPLINGS
from test_lookup import COSTLY, DRAFTS, GREEDY_TARGET, LOOKUP_PROMPT, REPEATING, serial

from specbranch.config import GenerationConfig, SamplingParams
from specbranch.decoders.base import PlanClock, plan_alone
from specbranch.decoders.tree_lookup import LookupRates, LookupTrie, build_trie
from specbranch.decoders.tree_round import TreeRound
from specbranch.engine import Engine
from specbranch.estimators import AcceptanceRate, Calibration


def ar_tokens(prompt: list[int], n: int) -> list[int]:
    config = GenerationConfig(max_new_tokens=n, ignore_eos=True)
    return Engine(make_pair(GREEDY_TARGET, None), "ar").generate(prompt, config).token_ids


class Copies:
    """A proposer (`decoders.proposer.Proposer`) that proposes the given copies."""

    def __init__(self, copies: list[list[int]]) -> None:
        self.copies = copies

    def continuations(self, context: list[int], num_tokens: int, count: int) -> list[list[int]]:
        return [c[:num_tokens] for c in self.copies][:count]


def drafted(engine: Engine, request, reach: int) -> TreeRound:
    """A draft round's tree (`TreeDecoder._draft_tree`: lookup shown to the draft, then its
    levels) for `request` with `reach` tokens of room, whatever the round controller would
    choose."""
    decoder = engine.decoder
    rnd = TreeRound(request, decoder.limits, reach, PlanClock())
    plan_alone(decoder._draft_tree(rnd, min(decoder.limits.depth, reach)))
    return rnd


def planned(engine: Engine, prompt: list[int], sampling: SamplingParams, seed: int, reach: int) -> TreeRound:
    """The first draft round after `prompt` with `reach` tokens of room."""
    return drafted(engine, engine.decoder.start(prompt, sampling, seed), reach)


def grown(engine: Engine, copies: list[list[int]], rates: LookupRates | None = None) -> tuple[TreeRound, int]:
    """The first greedy round after REPEATING[0] with `copies` as the proposer's continuations
    (reach 20), and the draft forwards it took; `rates`: those learnt so far. The draft's
    calibration is one that has seen its top tokens accepted (beta = 5.5: the tiny models'
    distributions are flat)."""
    decoder = engine.decoder
    decoder.proposer = Copies(copies)
    request = decoder.start(REPEATING[0], SamplingParams(), 0)
    request.lookup_rates = rates or request.lookup_rates
    request.calibration = Calibration(AcceptanceRate(10.0, 10.0), AcceptanceRate(1.0, 10.0, prior=1.0))
    rnd = drafted(engine, request, 20)
    return rnd, request.draft.forwards


# Copies have been accepted, always where the draft agreed and never where it did not.
AGREEMENT_PAYS = LookupRates(*(AcceptanceRate(50.0, hits) for hits in (50.0, 50.0, 0.0)))


def test_the_draft_sees_the_chain_in_one_forward_and_drafts_past_its_end(monkeypatch):
    """Copied tokens cost the draft no step: one forward gives its view after the root and after
    every chain token; a chain it agrees with is merged with its own likeliest tokens, and its
    children go on below the chain's end within that one level."""
    pair = make_pair(GREEDY_TARGET, GREEDY_TARGET)  # a draft that agrees with the target
    chain = ar_tokens(REPEATING[0], 4)
    rnd, forwards = grown(serial(pair, monkeypatch, "greedy", "on", max_draft_len=1), [chain])
    tree, shown = rnd.tree, rnd.shown[0]
    assert forwards == 1
    assert tree.tokens[:4] == chain and rnd.lookup[:4] == [True] * 4 and shown.agrees == [True] * 4
    assert rnd.drafted[:4] == [True] * 4
    assert any(tree.parents[j] == 3 and rnd.drafted[j] for j in range(4, len(tree)))


def test_the_chain_is_cut_where_the_draft_disagrees_and_such_tokens_are_rarely_accepted(monkeypatch):
    pair = make_pair(GREEDY_TARGET, GREEDY_TARGET)
    right = ar_tokens(REPEATING[0], 2)
    with torch.inference_mode():  # the draft's least likely token after `right`, then any
        unlikely = int(GREEDY_TARGET(input_ids=torch.tensor([REPEATING[0] + right])).logits[0, -1].argmin())
    wrong = [unlikely, 1, 2, 3]
    engine = serial(pair, monkeypatch, "greedy", "auto", costs=COSTLY, max_draft_len=1)
    rnd, _ = grown(engine, [right + wrong], AGREEMENT_PAYS)
    shown = rnd.shown[0]
    assert shown.tokens == right + wrong  # shown whole: the draft judges it
    assert shown.agrees[:3] == [True, True, False]
    assert sum(rnd.lookup) == 2 and rnd.tree.tokens[:2] == right


def test_of_several_copies_the_tree_keeps_the_one_the_draft_agrees_with(monkeypatch):
    """Continuations of different occurrences share their common prefix in the trie; where
    they part, the draft's top token tells which copy goes on."""
    pair = make_pair(GREEDY_TARGET, GREEDY_TARGET)
    right = ar_tokens(REPEATING[0], 3)
    wrong = right[:1] + [(right[1] + 1) % 64, right[2]]
    engine = serial(pair, monkeypatch, "greedy", "auto", costs=COSTLY, max_draft_len=1)
    rnd, forwards = grown(engine, [wrong, right], AGREEMENT_PAYS)
    shown = rnd.shown[0]
    assert shown.tokens == wrong + right[1:] and shown.parents == [-1, 0, 1, 0, 3]  # one shared node
    assert forwards == 1 and shown.agrees == [True, False, False, True, True]
    assert [rnd.tree.tokens[j] for j in range(len(rnd.tree)) if rnd.lookup[j]] == right


def test_the_trie_merges_shared_prefixes_and_stops_at_eos_length_and_room():
    trie = build_trie(-1, [[1, 2, 3], [1, 4], [5, 6, 7]], 2, 10, frozenset({6}))
    assert (trie.tokens, trie.parents, trie.first) == ([1, 2, 4, 5, 6], [-1, 0, 0, -1, 3], [1, 2, 3])
    assert build_trie(-1, [[1, 2, 3], [4, 5]], 3, 4, frozenset()).tokens == [1, 2, 3, 4]


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
def test_lookup_nodes_also_hang_under_drafted_nodes(draft_sampling, monkeypatch):
    """Where the draft leaves a copied span, lookup is tried again below its likeliest new node;
    the exact-distribution tests of test_lookup.py run these very trees (same pair, prompt and
    options)."""
    engine = serial(SMALL_PAIR, monkeypatch, draft_sampling, max_draft_len=3)
    rnd = planned(engine, LOOKUP_PROMPT, SAMPLINGS["t1"], 0, reach=8)
    assert any(trie.anchor >= 0 and trie.tokens for trie in rnd.shown)
    tree = rnd.tree
    under = [tree.parents[j] for j in range(len(tree)) if rnd.lookup[j] and tree.parents[j] >= 0]
    assert any(rnd.drafted[parent] and not rnd.lookup[parent] for parent in under)


def test_rates_are_learnt_by_agreement_up_to_the_first_mismatch():
    def counts(rates: LookupRates) -> tuple[float, ...]:
        return rates.agreed.tests, rates.agreed.hits, rates.disagreed.tests, rates.disagreed.hits

    rates = LookupRates()
    chain = LookupTrie(-1, [5, 6, 7, 8], [-1, 0, 1, 2], agrees=[True, True, False, True])
    rates.learn([chain], [], [5, 6, 9, 8])
    assert counts(rates) == (2, 2, 1, 0)
    rates = LookupRates()  # two children of the root: both tested
    rates.learn([LookupTrie(-1, [5, 7, 6], [-1, -1, 0], agrees=[True, False, False])], [], [7, 1])
    assert counts(rates) == (1, 0, 1, 1)
    for path, learnt in (([3, 4], 1), ([3, 5], 0)):  # under tree node 4: only if the walk took it
        rates = LookupRates()
        rates.learn([LookupTrie(4, [9], [-1], agrees=[True])], path, [2, 2, 9])
        assert rates.agreed.hits == learnt


def test_the_gate_learns_from_the_roots_likeliest_continuation():
    rates = LookupRates()
    rates.learn([LookupTrie(-1, [], [], first=[4, 5, 6])], [], [4, 5, 9])  # nothing shown, still learnt
    assert (rates.gate.tests, rates.gate.hits) == (3, 2)


def test_sampled_children_beside_a_chain_token_are_never_that_token(monkeypatch):
    pair = make_pair(GREEDY_TARGET, DRAFTS["partly-aligned"])
    engine = serial(pair, monkeypatch, "sample", "on", max_draft_len=1)
    chain, checked = ar_tokens(REPEATING[0], 3), 0
    engine.decoder.proposer = Copies([chain])
    for seed in range(5):
        tree = planned(engine, REPEATING[0], SAMPLINGS["t1"], seed, reach=20).tree
        parents = tree.parents
        siblings = [(c, j) for c in range(3, len(tree)) for j in range(3) if parents[c] == parents[j]]
        for child, link in siblings:  # a sampled child and the chain token beside it
            assert tree.tokens[child] != tree.tokens[link]
            assert float(tree.q[child][tree.tokens[link]]) == 0.0  # drawn from q without it
        checked += len(siblings)
    assert checked > 0
