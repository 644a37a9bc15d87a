"""How the CLI takes its inputs: generate's prompt from PROMPT, `-` (a real pipe) or --prompt-file,
and bench's --methods as space- and comma-separated specs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from helpers import save_tiny_model_dir

from specbranch.cli import main
from specbranch.cli.bench import split_methods
from specbranch.errors import SpecBranchError

PROMPT = "the cat\nsat on the mat\n"  # ends with a line break of its own, kept


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("inputs") / "target", seed=1)


def generate_args(target: str, *prompt: str) -> list[str]:
    return ["generate", *prompt, "--target", target, "--method", "ar", "--max-new-tokens", "12", "--json"]


def token_ids(capsys, target: str, *prompt: str) -> list[int]:
    assert main(generate_args(target, *prompt)) == 0
    return json.loads(capsys.readouterr().out)["token_ids"]


def test_prompt_from_a_real_pipe_drops_one_line_break_only(target, capsys):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    piped = subprocess.run(
        [sys.executable, "-m", "specbranch", *generate_args(target, "-")],
        input=(PROMPT + "\n").encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert json.loads(piped.stdout)["token_ids"] == token_ids(capsys, target, PROMPT)
    # the comparison can tell the prompts apart: without the kept line break the tokens differ
    assert token_ids(capsys, target, PROMPT.rstrip("\n")) != token_ids(capsys, target, PROMPT)


def test_prompt_file_is_verbatim_less_one_crlf(target, tmp_path, capsys):
    path = tmp_path / "prompt.txt"
    path.write_bytes((PROMPT + "\r\n").encode())
    assert token_ids(capsys, target, "--prompt-file", str(path)) == token_ids(capsys, target, PROMPT)


def test_empty_standard_input_is_an_error(target, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    assert main(generate_args(target, "-")) == 2
    assert capsys.readouterr().err == "error: the prompt is empty (standard input)\n"


@pytest.mark.parametrize(
    "content,prompt_args,message",
    [
        (None, [], "exactly one prompt: PROMPT, - (standard input) or --prompt-file PATH (none was given)"),
        (b"x", ["hello", "--prompt-file", "FILE"], "(both PROMPT and --prompt-file were given)"),
        (b"x", ["-", "--prompt-file", "FILE"], "(both PROMPT and --prompt-file were given)"),
        (None, ["--prompt-file", "FILE"], "cannot read --prompt-file FILE: No such file or directory"),
        (None, ["--prompt-file", "DIR"], "cannot read --prompt-file DIR: Is a directory"),
        (b"", ["--prompt-file", "FILE"], "the prompt is empty (--prompt-file FILE)"),
        (b"\r\n", ["--prompt-file", "FILE"], "the prompt is empty (--prompt-file FILE)"),
        (b"caf\xe9 noir", ["--prompt-file", "FILE"], "--prompt-file FILE is not UTF-8 text (invalid"),
        (None, [""], "the prompt is empty (PROMPT)"),
    ],
)
def test_prompt_errors_are_one_clear_line(target, tmp_path, capsys, content, prompt_args, message):
    path = tmp_path / "prompt.txt"
    if content is not None:
        path.write_bytes(content)
    names = {"FILE": str(path), "DIR": str(tmp_path)}
    assert main(generate_args(target, *[names.get(a, a) for a in prompt_args])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    for name, value in names.items():
        message = message.replace(name, value)
    assert message in err


@pytest.mark.parametrize(
    "words,specs",
    [
        (["ar", "sd", "specbranch"], ["ar", "sd", "specbranch"]),
        (["ar,sd,specbranch"], ["ar", "sd", "specbranch"]),
        (["ar,sd", "specbranch"], ["ar", "sd", "specbranch"]),
        (["ar, sd,", ",specbranch"], ["ar", "sd", "specbranch"]),
        (["specbranch:k_max=1,epsilon=0.3,ar"], ["specbranch:k_max=1,epsilon=0.3", "ar"]),
        (["sd:gamma=8,sd:gamma=4"], ["sd:gamma=8", "sd:gamma=4"]),
        (["ar,sd:draft_policy=svip,cap=4,pearl"], ["ar", "sd:draft_policy=svip,cap=4", "pearl"]),
        (["sd:draft_policy=svip:beta=2,cap=4,ar"], ["sd:draft_policy=svip:beta=2,cap=4", "ar"]),
    ],
)
def test_methods_split_on_spaces_and_commas_keeping_options(words, specs):
    assert split_methods(words) == specs


def test_an_option_with_no_method_before_it_is_an_error():
    with pytest.raises(SpecBranchError, match="option 'epsilon=0.3' follows no method"):
        split_methods(["specbranch:k_max=1", "epsilon=0.3"])


def test_bench_takes_a_comma_list(target, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello there"}\n')
    out = tmp_path / "out"
    argv = ["bench", "--target", target, "--max-new-tokens", "4", "--prompts-file", str(prompts),
            "--num-prompts", "1", "--no-progress", "--out", str(out),
            "--methods", "ar,lookup:threads=1", "ar:threads=2"]
    assert main(argv) == 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert list(summary) == ["ar", "lookup:threads=1", "ar:threads=2"]
    assert main([*argv, "ar"]) == 2
    assert "--methods lists the same method twice" in capsys.readouterr().err
