"""The cost probe's curves (`runtime.placement`): measured once per machine and model pair, then
read from the model cache; models without a path are measured every time and never cached; an
unreadable cache entry is measured again; a probe taken on a busy machine is retaken once the
machine is quiet. Also: the probe's own curves are well formed."""

from __future__ import annotations

import pytest
from helpers import make_pair, tiny_model

from specbranch.backends.base import KVSequence
from specbranch.backends.pytorch import TorchBackend
from specbranch.costs import CostCurve, Placement
from specbranch.probe import measure_curve
from specbranch.runtime import placement

CURVE = CostCurve(((1, 0.5), (2, 0.6)))
FAKE = Placement(CURVE, CURVE, CURVE, CURVE)


def named_pair(path: str):
    target, draft = tiny_model(seed=1), tiny_model(seed=2)
    target.config._name_or_path, draft.config._name_or_path = f"{path}/target", f"{path}/draft"
    return make_pair(target, draft)


def counting(monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(placement, "_measure", lambda pair, threads: calls.append(threads) or FAKE)
    return calls


@pytest.fixture
def probes(tmp_path, monkeypatch):
    monkeypatch.setattr(placement, "probe_dir", lambda: tmp_path / "probes")
    monkeypatch.setattr(placement, "machine_busy", lambda: False)
    return tmp_path / "probes"


def test_a_probe_taken_on_a_busy_machine_is_retaken_when_it_is_quiet(probes, monkeypatch):
    calls = counting(monkeypatch)
    pair = named_pair("models")
    monkeypatch.setattr(placement, "machine_busy", lambda: True)
    placement.placement_costs(pair, 1, 1)
    placement.placement_costs(pair, 1, 1)  # still busy: the busy probe is all there is
    assert len(calls) == 1
    monkeypatch.setattr(placement, "machine_busy", lambda: False)
    placement.placement_costs(pair, 1, 1)  # quiet now: measured again, and trusted from then on
    placement.placement_costs(pair, 1, 1)
    assert len(calls) == 2


def test_the_cache_lives_in_the_model_cache(tmp_path, monkeypatch):
    monkeypatch.undo()  # conftest points it at a temporary folder
    monkeypatch.setenv("SPECBRANCH_CACHE", str(tmp_path))
    assert placement.probe_dir() == tmp_path / "probes"


def test_a_named_pair_is_measured_once_then_read_from_the_cache(probes, monkeypatch):
    calls = counting(monkeypatch)
    pair = named_pair("models")
    assert placement.placement_costs(pair, 1, 1) == FAKE
    assert placement.placement_costs(pair, 1, 1) == FAKE
    assert len(calls) == 1
    assert len(list(probes.glob("*.json"))) == 1
    placement.placement_costs(pair, 2, 1)  # another thread split is another placement
    assert len(calls) == 2


def test_an_unreadable_entry_is_measured_again(probes, monkeypatch):
    calls = counting(monkeypatch)
    pair = named_pair("models")
    placement.placement_costs(pair, 1, 1)
    (entry,) = probes.glob("*.json")
    entry.write_text("{not json")
    assert placement.placement_costs(pair, 1, 1) == FAKE
    assert len(calls) == 2


def test_models_without_a_path_are_never_cached(probes, monkeypatch):
    calls = counting(monkeypatch)
    pair = make_pair(tiny_model(seed=1), tiny_model(seed=2))
    assert placement.probe_key(pair, (1, 1, 1)) is None
    placement.placement_costs(pair, 1, 1)
    placement.placement_costs(pair, 1, 1)
    assert len(calls) == 2 and not probes.exists()


def test_the_key_names_machine_models_and_threads():
    pair = named_pair("a")
    assert placement.probe_key(pair, (2, 1, 1)) != placement.probe_key(pair, (2, 2, 1))
    assert placement.probe_key(pair, (2, 1, 1)) != placement.probe_key(named_pair("b"), (2, 1, 1))
    assert set(placement.machine_identity()) == {"cpu", "flags", "cores", "gpu", "torch"}


def test_the_probe_measures_a_curve_at_the_asked_sizes():
    runner = KVSequence(TorchBackend(tiny_model(seed=1), 64))
    curve = measure_curve(runner, (1, 2, 4), threads=1)
    assert [n for n, _ in curve.points] == [1, 2, 4] and all(s > 0 for _, s in curve.points)
    assert runner.cache_length() == 0  # the probe leaves the cache empty
