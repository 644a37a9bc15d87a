"""The round controller (`decoders/tree_control.py`) on synthetic cost curves: what a serial
SpecBranch round spends, decided before it spends.

- With llama.cpp's shape on a 2-core CPU (a target forward over 8 tokens ~5.6 over 1, the draft
  half a target step) a round with nothing to copy is plain decoding, copied candidates are
  verified without a draft forward once they are accepted often, and the draft is tried only
  while its optimistic acceptance could still pay;
- with the shape of a bf16 PyTorch target (width nearly free, the draft a tenth of a step) the
  draft wins even at modest acceptance;
- a draft whose cache is far behind (after plain rounds) must pay for catching up;
- in a batch, copied candidates are priced at what they add to a forward that is already wide,
  and a draft at what the whole batch waits for it;
- at greedy decoding a plain round comes at least every EXPLORE_EVERY rounds, so a stale probe
  of the one-token forward is corrected;
- in an engine, plain and lookup rounds give exactly the tokens of plain decoding, and the
  choices are counted (`rounds_by_mode`).
"""

from __future__ import annotations

import pytest
from helpers import make_pair, tiny_model

from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.costs import Beside, CostCurve, Placement
from specbranch.decoders.tree_control import DRAFT, LOOKUP, PLAIN, DraftRounds, choose
from specbranch.engine import Engine
from specbranch.runtime import assembly

# Seconds per forward over n tokens, measured with llama-bench on the 2-core machine (issue 30).
LLAMA_TARGET = CostCurve(((1, 0.043), (2, 0.067), (4, 0.102), (8, 0.242), (16, 0.260), (32, 0.373)))
LLAMA_DRAFT = CostCurve(((1, 0.022), (4, 0.040), (8, 0.075), (16, 0.102)))
BF16_TARGET = CostCurve(((1, 0.20), (4, 0.21), (8, 0.26), (16, 0.35), (32, 0.55)))
BF16_DRAFT = CostCurve(((1, 0.03), (4, 0.035), (8, 0.045), (16, 0.06)))
FRESH = DraftRounds()  # no draft round yet
# on llama.cpp: 1.5 tokens a round from two draft steps and a 2-node chain
POOR = DraftRounds(rounds=10.0, tokens=15.0, seconds=10 * 0.044, nodes=10 * 2.0)
# on bf16 torch: 3.5 tokens a round from four draft levels and 8 nodes
MODEST = DraftRounds(rounds=10.0, tokens=35.0, seconds=10 * 0.12, nodes=10 * 8.0)
CHAIN = list(range(10))


def test_nothing_to_copy_and_a_draft_that_cannot_pay_is_plain_decoding():
    choice = choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, [], 0.5, POOR, 8, "auto")
    assert choice.mode == PLAIN and choice.rate == 1 / 0.043


def test_copied_candidates_pay_once_they_are_accepted_and_not_before():
    assert choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, CHAIN, 0.5, POOR, 8, "auto").mode == PLAIN
    copying = choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, CHAIN, 0.95, POOR, 8, "auto")
    assert copying.mode == LOOKUP and 1 <= len(copying.candidates) <= len(CHAIN)
    assert copying.rate > 1 / 0.043
    assert choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, CHAIN, 0.95, POOR, 8, "off").mode == PLAIN


def test_the_draft_is_tried_before_any_evidence_and_dropped_once_its_rounds_show_it_does_not_pay():
    assert choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, [], 0.5, FRESH, 8, "auto").mode == DRAFT
    assert choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, [], 0.5, POOR, 8, "auto").mode == PLAIN


def test_where_width_is_nearly_free_the_draft_wins_at_modest_acceptance():
    assert choose(BF16_TARGET, BF16_DRAFT, 0.0, CHAIN, 0.5, MODEST, 8, "auto").mode == DRAFT


def test_a_draft_far_behind_pays_for_catching_up():
    assert choose(BF16_TARGET, BF16_DRAFT, 0.0, [], 0.5, MODEST, 8, "auto", behind=1).mode == DRAFT
    assert choose(BF16_TARGET, BF16_DRAFT, 0.0, [], 0.5, MODEST, 8, "auto", behind=400).mode == PLAIN


def test_plain_and_lookup_rounds_give_plain_decodings_tokens(monkeypatch):
    target = tiny_model(seed=1)
    pair = make_pair(target, tiny_model(seed=3))
    curves = Placement(LLAMA_TARGET, LLAMA_DRAFT, LLAMA_TARGET, LLAMA_DRAFT, correct=False)
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: curves)
    engine = Engine(pair, "specbranch", SpeculativeConfig(), execution="serial", lookup="auto")
    prompt, config = [5, 6, 5, 6, 5, 6, 5], GenerationConfig(max_new_tokens=40, ignore_eos=True)
    result = engine.generate(prompt, config)
    assert result.token_ids == Engine(make_pair(target, None), "ar").generate(prompt, config).token_ids
    modes = result.metrics.rounds_by_mode
    assert sum(modes.values()) == result.metrics.target_forwards and modes.get(PLAIN, 0) > 0


def test_beside_plain_mates_width_is_priced_at_what_it_adds_and_a_draft_at_what_the_batch_waits():
    # llama.cpp: four copied candidates beside 7 mates' tokens widen a forward that is already
    # 8 wide (cheap there), while alone they would cost a 5-token forward
    assert choose(LLAMA_TARGET, LLAMA_DRAFT, 0.0, CHAIN, 0.5, POOR, 8, "auto").mode == PLAIN
    beside = Beside(LLAMA_TARGET, 7)
    assert choose(beside, LLAMA_DRAFT, 0.0, CHAIN, 0.5, POOR, 8, "auto", mates=7).mode == LOOKUP
    # bf16 torch: the draft pays alone, but beside three plain mates the whole batch waits for
    # its draft forwards while a 4-token forward costs what 1 does
    assert choose(BF16_TARGET, BF16_DRAFT, 0.0, [], 0.5, MODEST, 8, "auto").mode == DRAFT
    batched = choose(Beside(BF16_TARGET, 3), BF16_DRAFT, 0.0, [], 0.5, MODEST, 8, "auto", mates=3)
    assert batched.mode == PLAIN and batched.rate == 4 / BF16_TARGET.seconds(4)


def test_at_greedy_a_plain_round_now_and_then_corrects_a_stale_one_token_cost(monkeypatch):
    # a probe whose one-token forward read as dear as a 64-token one (a busy machine): plain
    # decoding looks hopeless and every round would draft; the real tiny model says otherwise
    stale = CostCurve(tuple((n, 1.0) for n in (1, 2, 4, 8, 16, 64)))  # rounds' widths leave T(1) be
    curves = Placement(stale, BF16_DRAFT, stale, BF16_DRAFT, correct=True)
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: curves)
    pair = make_pair(tiny_model(seed=1), tiny_model(seed=3))
    engine = Engine(pair, "specbranch", SpeculativeConfig(), execution="serial", lookup="off")
    config = GenerationConfig(max_new_tokens=120, ignore_eos=True)
    result = engine.generate([5, 6, 7], config)
    assert result.metrics.rounds_by_mode.get(PLAIN, 0) >= 1
    assert engine.decoder.corrected[0].ratios[0] <= 0.8 + 1e-9  # T(1) learnt from a plain round's timing
    sampled = engine.generate([5, 6, 7], GenerationConfig(60, SamplingParams(1.0), seed=1))
    # sampled rounds keep the probed curves: plain only for the prompt's round (the draft's cache
    # lacks the whole prompt then), never to explore
    assert sampled.metrics.rounds_by_mode.get(PLAIN, 0) <= 1 < result.metrics.rounds_by_mode[PLAIN]


def test_beside_mates_run_in_turn_the_batch_waits_for_their_forwards_whatever_the_round_does():
    # torch runs a round's feeds one after the other: three plain mates cost 3 T(1) whatever
    # this request does, so its draft pays as it does alone (a shared forward would make it not)
    in_turn = Beside(BF16_TARGET, 3, shared=False)
    assert in_turn.seconds(1) == pytest.approx(4 * BF16_TARGET.seconds(1))
    assert choose(in_turn, BF16_DRAFT, 0.0, [], 0.5, MODEST, 8, "auto", mates=3).mode == DRAFT
