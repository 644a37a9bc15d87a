"""The generate command, streaming and stop strings, on tiny model folders with a tokenizer."""

from __future__ import annotations

import json

import pytest
from helpers import save_tiny_model_dir

from specbranch.cli import build_parser, main
from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.engine import Engine
from specbranch.models import load_pair


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return save_tiny_model_dir(root / "target", seed=1), save_tiny_model_dir(root / "draft", seed=2)


def cli_json(capsys, *argv: str) -> dict:
    assert main(["generate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_output_and_sd_equals_ar(folders, capsys):
    target, draft = folders
    common = [
        "hello",
        "--target",
        target,
        "--draft",
        draft,
        "--max-new-tokens",
        "20",
        "--draft-quantize",
        "none",
    ]
    ar = cli_json(capsys, *common, "--method", "ar")
    sd = cli_json(capsys, *common, "--method", "sd", "--gamma", "3")
    assert set(sd) == {"text", "token_ids", "origins", "metrics"}
    assert sd["token_ids"] == ar["token_ids"] and sd["text"] == ar["text"]
    for name in ("acceptance_rate", "mean_accepted_length", "rollback_rate", "tokens_per_second"):
        assert name in sd["metrics"]
    assert ar["metrics"]["mean_accepted_length"] == 1.0


def test_int8_draft_keeps_output_exact(folders, capsys):
    target, draft = folders
    common = ["hello", "--target", target, "--draft", draft, "--max-new-tokens", "16"]
    ar = cli_json(capsys, *common, "--method", "ar")
    sd = cli_json(capsys, *common, "--method", "sd", "--draft-quantize", "int8")
    assert sd["token_ids"] == ar["token_ids"]


@pytest.mark.parametrize(
    "method,extra",
    [
        ("pearl", ["--max-draft-len", "3"]),
        ("specbranch", ["--execution", "parallel", "--k-max", "3", "--epsilon", "0.1"]),
    ],
)
def test_parallel_methods_with_int8_draft_worker_equal_ar(folders, capsys, method, extra):
    target, draft = folders
    common = ["hello", "--target", target, "--draft", draft, "--max-new-tokens", "16"]
    ar = cli_json(capsys, *common, "--method", "ar")
    out = cli_json(capsys, *common, "--method", method, "--draft-quantize", "int8", *extra)
    assert out["token_ids"] == ar["token_ids"]
    assert out["metrics"]["cost_ratio"] > 0


def test_parallel_flags_are_refused_for_other_methods(folders, capsys):
    target, draft = folders
    common = ["generate", "hello", "--target", target, "--draft", draft]
    assert main([*common, "--method", "sd", "--inline"]) == 2
    assert "--inline" in capsys.readouterr().err
    assert main([*common, "--method", "pearl", "--k-max", "3"]) == 2
    assert "specbranch only" in capsys.readouterr().err


def test_stream_prints_the_same_text(folders, capsys):
    target, draft = folders
    common = ["hello", "--target", target, "--draft", draft, "--max-new-tokens", "20"]
    assert main(["generate", *common]) == 0
    plain = capsys.readouterr().out
    assert main(["generate", *common, "--stream"]) == 0
    assert capsys.readouterr().out == plain


def test_stop_string_truncates_text_and_stream(folders):
    target, draft = folders
    pair = load_pair(target, draft)
    engine = Engine(pair, "sd", SpeculativeConfig(gamma=4))
    full = engine.generate("hello", GenerationConfig(max_new_tokens=30, ignore_eos=True))
    stop = full.text[10:12]
    assert len(stop) == 2
    chunks = list(engine.stream("hello", GenerationConfig(max_new_tokens=30, stop=(stop,), ignore_eos=True)))
    result = chunks[-1].result
    assert result.finish_reason == "stop"
    assert result.text == full.text[: full.text.index(stop)]
    assert "".join(c.text for c in chunks) == result.text
    assert full.token_ids[: len(result.token_ids)] == result.token_ids


def test_help_explains_every_option():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["generate"]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help text"
    for flag in (
        "--pair",
        "--target",
        "--draft",
        "--method",
        "--max-new-tokens",
        "--temperature",
        "--top-k",
        "--top-p",
        "--seed",
        "--gamma",
        "--chat",
        "--stream",
        "--json",
        "--inline",
        "--k-max",
        "--epsilon",
        "--hrad",
        "--max-draft-len",
        "--draft-sampling",
        "--draft-threads",
        "--target-threads",
        "--master-addr",
        "--master-port",
        "--worker-timeout",
    ):
        assert flag in sub.format_help()


def test_models_command_lists_pairs(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-coder" in out and "smollm2" in out
