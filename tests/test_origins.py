"""Where each committed token came from (`metrics.ORIGINS`), in the library, `--json` and
`generate --show-drafts`:

- one origin per token, for every method; AR's tokens are all the target's; a serial method's
  rounds each end with one token of the target (correction or bonus); SD and PEARL have no
  branches; SpecBranch's trees commit tokens from branches other than the likeliest root;
  `lookup` commits lookup tokens;
- `--json` carries the library's origins; `--show-drafts` prints plain text (equal to the
  output) with the tokens per round when the output is not a terminal, and coloured pieces
  with a legend on a real terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pexpect
import pytest
from helpers import char_tokenizer, make_pair, perturbed, save_tiny_model_dir, tiny_model
from test_tree_decoder import WIDE

from specbranch.cli import main
from specbranch.cli.drafts import STYLES, OriginText
from specbranch.config import GenerationConfig
from specbranch.engine import Engine
from specbranch.metrics import BRANCH, DRAFT, LOOKUP, ORIGINS, TARGET
from specbranch.runtime import assembly

TARGET_MODEL = tiny_model(seed=1)
PAIR = make_pair(TARGET_MODEL, perturbed(TARGET_MODEL, 0.05, seed=2))
PROMPT = [5, 6, 5, 6, 5, 6, 5]
CONFIG = GenerationConfig(max_new_tokens=60, ignore_eos=True)
METHODS = {
    "ar": ("ar", {}),
    "sd": ("sd", {}),
    "lookup": ("lookup", {}),
    "tree": ("specbranch", {"execution": "serial"}),
    "parallel": ("specbranch", {"execution": "parallel", "inline": True}),
    "pearl": ("pearl", {"inline": True}),
}


def origins_of(name: str) -> tuple[list[str], object]:
    """A generation's origins and metrics; trees sized by synthetic curves under which drafting
    pays (measured on these tiny models, whose draft costs what the target does, the round
    controller would rightly decode plainly)."""
    method, options = METHODS[name]
    pair = make_pair(TARGET_MODEL, None) if name in ("ar", "lookup") else PAIR
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)
        engine = Engine(pair, method, **options)
    result = engine.generate(PROMPT, CONFIG)
    assert len(result.origins) == len(result.token_ids) and set(result.origins) <= set(ORIGINS)
    return result.origins, result.metrics


@pytest.mark.parametrize("name", ["ar", "sd", "lookup", "tree"])
def test_each_serial_round_ends_with_one_target_token(name):
    origins, metrics = origins_of(name)
    # The budget may cut the last round before its target token.
    assert metrics.target_forwards - 1 <= origins.count(TARGET) <= metrics.target_forwards
    if name == "ar":
        assert set(origins) == {TARGET}


def test_each_method_names_only_the_origins_it_has():
    found = {name: Counter(origins_of(name)[0]) for name in METHODS}
    assert found["lookup"][LOOKUP] > 0 and found["lookup"][DRAFT] == 0
    for name in ("sd", "pearl"):
        assert found[name][DRAFT] > 0 and found[name][BRANCH] == 0 == found[name][LOOKUP]
    for name in ("tree", "parallel"):
        assert found[name][BRANCH] > 0  # this draft's second choices are often the target's


def test_origin_text_colours_each_piece_and_joins_to_the_output():
    tokenizer = char_tokenizer()
    ids = tokenizer.encode("ab c", add_special_tokens=False)
    origins = [DRAFT, BRANCH, LOOKUP, TARGET]
    coloured = OriginText(tokenizer, colour=True).feed(ids, origins)
    for piece, origin in zip("ab c", origins, strict=True):
        assert f"{STYLES[origin][0]}{piece}" in coloured
    assert OriginText(tokenizer, colour=False).feed(ids, origins) == "ab c"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("origins")
    return save_tiny_model_dir(root / "target", seed=1), save_tiny_model_dir(root / "draft", seed=2)


def args(folders) -> list[str]:
    target, draft = folders
    return ["generate", "hello", "--target", target, "--draft", draft, "--max-new-tokens", "24",
            "--draft-quantize", "none", "--method", "sd"]


def test_json_carries_the_origins_and_show_drafts_prints_the_plain_text_off_a_terminal(folders, capsys):
    assert main([*args(folders), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["origins"]) == len(result["token_ids"]) and set(result["origins"]) <= set(ORIGINS)
    assert main([*args(folders), "--show-drafts"]) == 0
    out, err = capsys.readouterr()
    assert out == result["text"] + "\n" and "\033[" not in out
    assert "tokens per round" in err and "origins:" in err


def test_show_drafts_colours_the_text_on_a_terminal(folders):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = pexpect.spawn(sys.executable, ["-m", "specbranch", *args(folders), "--show-drafts"],
                          env=env, encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "\033[" in child.before and "legend:" in child.before
    plain = subprocess.run([sys.executable, "-m", "specbranch", *args(folders), "--show-drafts"],
                           capture_output=True, text=True, env=env, check=True)
    assert "\033[" not in plain.stdout
