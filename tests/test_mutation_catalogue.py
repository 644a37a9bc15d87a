"""The mutation check's catalogue still applies: each mutant's text occurs exactly once in the
source it mutates (a refactor that moves the text would otherwise turn the mutant into an error
only found when someone runs the slow check)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = runpy.run_path(str(ROOT / "scripts" / "mutation_check.py"), run_name="catalogue")


@pytest.mark.parametrize("mutant", CHECK["MUTANTS"], ids=lambda m: m.name)
def test_each_mutant_text_occurs_once(mutant) -> None:
    text = (ROOT / "src" / "specbranch" / mutant.path).read_text()
    for old, _ in mutant.edits:
        assert text.count(old) == 1, f"{mutant.name}: {old!r} occurs {text.count(old)} times"
