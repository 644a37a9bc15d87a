"""The throughput model (`specbranch.costs`) and what it decides, on synthetic cost curves (no
timing in tests):

- cost curves interpolate between measured points and reject malformed ones; a corrected curve
  learns from the widths rounds use and ignores a prefill wider than the probe;
- `best_prefix` adds exactly the nodes that raise expected tokens per second;
- the execution choice is the mode whose predicted rate is higher (a device each: parallel;
  one shared device whose split halves each model's speed: serial), and `--execution auto`
  builds that mode;
- a tree sized by a flat verify cost grows wide, by a steep one stays a chain, and by costly
  draft levels stays shallow; whatever the sizing, greedy output equals AR's.
"""

from __future__ import annotations

import pytest
from helpers import make_pair, perturbed, tiny_model

from specbranch.config import GenerationConfig, ParallelConfig, SpeculativeConfig
from specbranch.costs import (
    ACCEPTANCE_RANGE,
    CorrectedCurve,
    CostCurve,
    Placement,
    Share,
    best_prefix,
    chain_tokens,
    choose_execution,
    parallel_rate,
    serial_rate,
)
from specbranch.decoders.parallel import ParallelDecoder
from specbranch.decoders.tree import TreeDecoder
from specbranch.engine import Engine
from specbranch.runtime import assembly


def linear(first: float, slope: float, sizes=(1, 2, 4, 8, 16, 32, 64)) -> CostCurve:
    """A curve costing `first` for one token and `slope` more per further token."""
    return CostCurve(tuple((n, first + slope * (n - 1)) for n in sizes))


FLAT = linear(1.0, 0.001)  # a wide verify costs what a narrow one does
STEEP = linear(1.0, 1.0)  # every verified token costs a whole forward
CHEAP_DRAFT = linear(0.05, 0.001, (1, 2, 4, 8, 16))


def test_a_curve_interpolates_and_extends_its_last_slope():
    curve = CostCurve(((1, 1.0), (4, 2.5), (8, 3.0)))
    assert curve.seconds(1) == 1.0 and curve.seconds(0.5) == 1.0
    assert curve.seconds(2) == pytest.approx(1.5)
    assert curve.seconds(6) == pytest.approx(2.75)
    assert curve.seconds(12) == pytest.approx(3.5)
    assert CostCurve.from_list(curve.to_list()) == curve


def test_a_shared_forward_costs_each_sharer_its_share_of_the_wider_forward():
    curve = CostCurve(((1, 1.0), (4, 2.5), (8, 3.0)))
    assert Share(curve, 4).seconds(1) == pytest.approx(2.5 / 4)  # 4 one-token feeds in one forward
    assert Share(curve, 2).seconds(4) == pytest.approx(3.0 / 2)
    assert Share(curve, 1).seconds(2) == curve.seconds(2)


@pytest.mark.parametrize("points", [(), ((0, 1.0),), ((2, 1.0), (1, 1.0)), ((1, 0.0),), ((1, 1.0), (1, 2.0))])
def test_a_malformed_curve_is_refused(points):
    with pytest.raises(ValueError):
        CostCurve(points)


def test_chain_tokens_is_the_geometric_sum():
    assert chain_tokens(0.5, 0) == 1.0
    assert chain_tokens(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)


def test_best_prefix_adds_the_nodes_that_raise_the_rate():
    # One round so far: 1 token in 1.0 s. Under the flat curve each node costs 0.001 s, so any
    # node worth more than 0.001 tokens pays; under the steep one a node costs 1 s and pays only
    # when worth more than the current rate (1 token/s): none of these.
    values = [0.9, 0.5, 0.2, 0.0005]
    assert best_prefix(values, 1.0, 1.0, 0, FLAT) == 3
    assert best_prefix(values, 1.0, 1.0, 0, STEEP) == 0
    assert best_prefix([1.5, 0.9], 1.0, 1.0, 0, STEEP) == 1  # 2.5 tokens in 2 s beats 1 in 1 s
    assert best_prefix([], 1.0, 1.0, 0, FLAT) == 0


def test_the_predicted_rates_follow_the_formulas():
    costs = Placement(FLAT, CHEAP_DRAFT, FLAT, CHEAP_DRAFT)
    rate, length = serial_rate(costs, 0.8, 8)
    expected = max(chain_tokens(0.8, n) / (n * 0.05 + FLAT.seconds(n + 1)) for n in range(1, 9))
    assert rate == pytest.approx(expected) and 1 <= length <= 8
    rate, length = parallel_rate(costs, 0.8, 8)
    expected = max(
        chain_tokens(0.8, n) / (max(FLAT.seconds(n + 1), n * 0.05) + (1 - 0.8**n) * n * 0.05)
        for n in range(1, 9)
    )
    assert rate == pytest.approx(expected)


def split(curve: CostCurve, factor: float) -> CostCurve:
    return CostCurve(tuple((n, s * factor) for n, s in curve.points))


DEVICE_EACH = Placement(FLAT, CHEAP_DRAFT, FLAT, CHEAP_DRAFT)  # the paper's setting
SHARED_CPU = Placement(FLAT, CHEAP_DRAFT, split(FLAT, 1.8), split(CHEAP_DRAFT, 1.5))


@pytest.mark.parametrize(("costs", "mode"), [(DEVICE_EACH, "parallel"), (SHARED_CPU, "serial")])
def test_the_execution_choice_is_the_faster_predicted_mode(costs, mode):
    ratio = 1.0
    for alpha in ACCEPTANCE_RANGE:
        ratio *= parallel_rate(costs, alpha, 24)[0] / serial_rate(costs, alpha, 24)[0]
    assert (ratio > 1.0) == (mode == "parallel")
    assert choose_execution(costs, 24) == mode


TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.01, seed=2))
PROMPT = [3, 17, 42, 8, 8, 1, 60, 22, 9]


@pytest.mark.parametrize(("costs", "decoder"), [(DEVICE_EACH, ParallelDecoder), (SHARED_CPU, TreeDecoder)])
def test_auto_execution_builds_the_chosen_mode(costs, decoder, monkeypatch):
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: costs)
    config = ParallelConfig(inline=True, hrad="none")
    built = assembly.build_specbranch(PAIR, SpeculativeConfig(), config, True)
    try:
        assert isinstance(built, decoder)
    finally:
        built.close()


def sized_run(monkeypatch, target: CostCurve, draft: CostCurve):
    costs = Placement(target, draft, target, draft, correct=False)
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: costs)
    # the draft's tree alone (no lookup branches)
    options = {"execution": "serial", "k_max": 8, "max_draft_len": 6, "lookup": "off"}
    engine = Engine(PAIR, "specbranch", SpeculativeConfig(), **options)
    result = engine.generate(PROMPT, GenerationConfig(max_new_tokens=40))
    reference = Engine(PAIR, "ar").generate(PROMPT, GenerationConfig(max_new_tokens=40))
    assert result.token_ids == reference.token_ids
    return result.metrics


def test_the_tree_follows_the_cost_curves(monkeypatch):
    wide = sized_run(monkeypatch, FLAT, CHEAP_DRAFT)
    chain = sized_run(monkeypatch, STEEP, CHEAP_DRAFT)
    shallow = sized_run(monkeypatch, FLAT, linear(5.0, 0.001, (1, 2, 4, 8, 16)))
    assert wide.mean_tree_size > wide.mean_tree_depth  # branches where verifying is free
    assert chain.mean_tree_size <= chain.mean_tree_depth + 1e-9  # no node beside the path
    assert shallow.mean_tree_depth <= 1.0 < wide.mean_tree_depth  # a draft level costs 5 forwards
    data = wide.to_dict()
    assert data["execution"] == "serial" and data["tree_max_depth"] == 6
    assert len(data["acceptance_by_depth"]) == 7 and data["acceptance_by_depth"][0] is not None


def test_a_corrected_curve_learns_from_round_widths_and_ignores_a_prefill():
    curve = CorrectedCurve(CostCurve(((1, 0.04), (8, 0.2), (64, 0.8))))
    curve.observe(1, 0.03)  # a plain round, faster than the probe said
    assert 0.03 < curve.seconds(1) < 0.04
    before = curve.seconds(64)
    curve.observe(230, 1.5)  # a prompt's prefill: wider than any probed forward
    assert curve.seconds(64) == before
