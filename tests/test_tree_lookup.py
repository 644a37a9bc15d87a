"""Prompt lookup inside SpecBranch's trees (`decoders/tree_lookup.py`, `TreeDecoder._lookup`,
`_hang`, `_score_lookup`):

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
from specbranch.decoders import tree as tree_module
from specbranch.decoders.lookup import AcceptanceRate
from specbranch.decoders.tree import Calibration
from specbranch.decoders.tree_lookup import LookupRates, LookupTrie, build_trie
from specbranch.engine import Engine


def ar_tokens(prompt: list[int], n: int) -> list[int]:
    config = GenerationConfig(max_new_tokens=n, ignore_eos=True)
    return Engine(make_pair(GREEDY_TARGET, None), "ar").generate(prompt, config).token_ids


def grown(decoder, copies: list[list[int]], depth: int, monkeypatch, rates: LookupRates | None = None):
    """The first greedy round's tree after REPEATING[0] with `copies` as prompt lookup's
    continuations (tree, nodes, slots, the trie the draft was shown under the root), and the
    draft forwards it took; `rates`: those learnt so far. The draft's calibration is one that
    has seen its top tokens accepted (beta = 5.5: the tiny models' distributions are flat)."""
    found = lambda context, num_tokens, count: [c[:num_tokens] for c in copies][:count]  # noqa: E731
    monkeypatch.setattr(tree_module, "lookup_continuations", found)
    decoder.start(REPEATING[0], SamplingParams(), 0)
    decoder.lookup_rates = rates or decoder.lookup_rates
    decoder.calibration = Calibration(tests=10.0, entered=10.0, predicted=1.0)
    before = decoder.draft.forwards
    tree, nodes, slots, shown = decoder._grow(list(REPEATING[0]), depth, reach=20)
    return (tree, nodes, slots, shown[0]), decoder.draft.forwards - before


# Copies have been accepted, always where the draft agreed and never where it did not.
AGREEMENT_PAYS = LookupRates(*(AcceptanceRate(50.0, hits) for hits in (50.0, 50.0, 0.0)))


def test_the_draft_sees_the_chain_in_one_forward_and_drafts_past_its_end(monkeypatch):
    """Copied tokens cost the draft no step: one forward gives its view after the root and after
    every chain token; a chain it agrees with is merged with its own likeliest tokens, and its
    children go on below the chain's end within that one level."""
    pair = make_pair(GREEDY_TARGET, GREEDY_TARGET)  # a draft that agrees with the target
    chain = ar_tokens(REPEATING[0], 4)
    decoder = serial(pair, monkeypatch, "greedy", "on").decoder
    (tree, nodes, _, shown), forwards = grown(decoder, [chain], 1, monkeypatch)
    assert forwards == 1
    assert tree.tokens[:4] == chain and nodes.lookup[:4] == [True] * 4 and shown.agrees == [True] * 4
    assert nodes.drafted[:4] == [True] * 4
    assert any(tree.parents[j] == 3 and nodes.drafted[j] for j in range(4, len(tree)))


def test_the_chain_is_cut_where_the_draft_disagrees_and_such_tokens_are_rarely_accepted(monkeypatch):
    pair = make_pair(GREEDY_TARGET, GREEDY_TARGET)
    right = ar_tokens(REPEATING[0], 2)
    with torch.inference_mode():  # the draft's least likely token after `right`, then any
        unlikely = int(GREEDY_TARGET(input_ids=torch.tensor([REPEATING[0] + right])).logits[0, -1].argmin())
    wrong = [unlikely, 1, 2, 3]
    decoder = serial(pair, monkeypatch, "greedy", "auto", costs=COSTLY).decoder
    (tree, nodes, _, shown), _ = grown(decoder, [right + wrong], 1, monkeypatch, AGREEMENT_PAYS)
    assert shown.tokens == right + wrong  # shown whole: the draft judges it
    assert shown.agrees[:3] == [True, True, False]
    assert sum(nodes.lookup) == 2 and tree.tokens[:2] == right


def test_of_several_copies_the_tree_keeps_the_one_the_draft_agrees_with(monkeypatch):
    """Continuations of different occurrences share their common prefix in the trie; where
    they part, the draft's top token tells which copy goes on."""
    pair = make_pair(GREEDY_TARGET, GREEDY_TARGET)
    right = ar_tokens(REPEATING[0], 3)
    wrong = right[:1] + [(right[1] + 1) % 64, right[2]]
    decoder = serial(pair, monkeypatch, "greedy", "auto", costs=COSTLY).decoder
    (tree, nodes, _, shown), forwards = grown(decoder, [wrong, right], 1, monkeypatch, AGREEMENT_PAYS)
    assert shown.tokens == wrong + right[1:] and shown.parents == [-1, 0, 1, 0, 3]  # one shared node
    assert forwards == 1 and shown.agrees == [True, False, False, True, True]
    assert [tree.tokens[j] for j in range(len(tree)) if nodes.lookup[j]] == right


def test_the_trie_merges_shared_prefixes_and_stops_at_eos_length_and_room():
    trie = build_trie(-1, [[1, 2, 3], [1, 4], [5, 6, 7]], 2, 10, frozenset({6}))
    assert (trie.tokens, trie.parents, trie.first) == ([1, 2, 4, 5, 6], [-1, 0, 0, -1, 3], [1, 2, 3])
    assert build_trie(-1, [[1, 2, 3], [4, 5]], 3, 4, frozenset()).tokens == [1, 2, 3, 4]


@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
def test_lookup_nodes_also_hang_under_drafted_nodes(draft_sampling, monkeypatch):
    """Where the draft leaves a copied span, lookup is tried again below its likeliest new node;
    the exact-distribution tests of test_lookup.py run these very trees (same pair, prompt and
    options)."""
    decoder = serial(SMALL_PAIR, monkeypatch, draft_sampling).decoder
    decoder.start(LOOKUP_PROMPT, SAMPLINGS["t1"], 0)
    tree, nodes, _, shown = decoder._grow(list(LOOKUP_PROMPT), 3, reach=8)
    assert any(trie.anchor >= 0 and trie.tokens for trie in shown)
    under = [tree.parents[j] for j in range(len(tree)) if nodes.lookup[j] and tree.parents[j] >= 0]
    assert any(nodes.drafted[parent] and not nodes.lookup[parent] for parent in under)


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
    decoder = serial(pair, monkeypatch, "sample", "on").decoder
    chain, checked = ar_tokens(REPEATING[0], 3), 0
    monkeypatch.setattr(tree_module, "lookup_continuations", lambda context, num_tokens, count: [chain])
    for seed in range(5):
        decoder.start(REPEATING[0], SAMPLINGS["t1"], seed)
        tree, _, _, _ = decoder._grow(list(REPEATING[0]), 1, reach=20)
        parents = tree.parents
        siblings = [(c, j) for c in range(3, len(tree)) for j in range(3) if parents[c] == parents[j]]
        for child, link in siblings:  # a sampled child and the chain token beside it
            assert tree.tokens[child] != tree.tokens[link]
            assert float(tree.q[child][tree.tokens[link]]) == 0.0  # drawn from q without it
        checked += len(siblings)
    assert checked > 0
