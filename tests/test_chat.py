"""`specbranch chat` driven in a real pseudo-terminal (pexpect), on tiny model folders with a chat template.

Answers are greedy, so each must equal the library's AR answer to the same conversation: that is
how the tests see what the history holds (after a turn, after /reset, after a stopped answer).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys

import pexpect
import pytest
from helpers import char_tokenizer, perturbed, save_tiny_model_dir
from transformers import LlamaForCausalLM

from specbranch.cli import build_parser, main
from specbranch.cli.chat import PROMPT, SESSION_COMMANDS, STOPPED
from specbranch.config import GenerationConfig
from specbranch.engine import Engine
from specbranch.models import load_pair

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} says {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant says {% endif %}"
)
MAX_NEW_TOKENS = 3000
# Greedy answers of the seed-11 target: the questions asked below get a few dozen to a few hundred
# tokens; LONG after the "hello" turn over 1500 (a second or more: time to stop it with Ctrl-C).
LONG = "say something"
FIGURES = re.compile(
    r"\[(\w+)\] (\d+) tokens in [\d.]+s = [\d.]+ tok/s; mean accepted length ([\d.]+); "
    r"acceptance rate [\d.]+; finish: (stop|length)\r\n"
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(target, draft, cache): model folders whose tokenizer has a chat template (the draft a
    slightly perturbed target, so drafts are often accepted); a folder for the probe's cache."""
    root = tmp_path_factory.mktemp("chat")
    target = chat_model_dir(root / "target", max_positions=4096)
    draft = str(root / "draft")
    perturbed(LlamaForCausalLM.from_pretrained(target), 0.02, seed=5).save_pretrained(draft)
    save_chat_tokenizer(draft)
    return target, draft, str(root / "cache")


def chat_model_dir(path, max_positions: int) -> str:
    """The seed-11 tiny model saved to `path` with a tokenizer that has a chat template."""
    folder = save_tiny_model_dir(path, seed=11, max_positions=max_positions)
    save_chat_tokenizer(folder)
    return folder


def save_chat_tokenizer(folder: str) -> None:
    tokenizer = char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def library(folders):
    """The library's greedy AR answer text to a list of chat messages."""
    engine = Engine(load_pair(folders[0], dtype="float32"), "ar")
    config = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)
    yield lambda messages: engine.generate(messages, config, chat=True).text
    engine.close()


def spawn(folders, *options: str) -> pexpect.spawn:
    """`specbranch chat` on the tiny pair in a pseudo-terminal, at its first prompt."""
    target, draft, cache = folders
    argv = ["-m", "specbranch", "chat", "--target", target, "--draft", draft, "--dtype", "float32"]
    argv += ["--draft-quantize", "none", "--threads", "1", "--max-new-tokens", str(MAX_NEW_TOKENS)]
    env = {**os.environ, "SPECBRANCH_CACHE": cache, "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, [*argv, *options], env=env, encoding="utf-8", timeout=60)
    child.expect_exact(PROMPT)
    return child


def ask(child: pexpect.spawn, question: str, method: str) -> str:
    """Send a question; the answer as printed (terminal line endings undone), checked to be followed
    by its figures line and the next prompt."""
    child.sendline(question)
    child.expect_exact(question + "\r\n")
    child.expect(FIGURES)
    name, tokens, accepted, _ = child.match.groups()
    assert name == method and int(tokens) > 0 and float(accepted) >= 1.0
    answer = child.before.replace("\r\n", "\n")
    child.expect_exact(PROMPT)
    assert answer.endswith("\n")
    return answer[:-1]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def ends(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_two_turns_history_reset_and_exit(folders, library):
    system = {"role": "system", "content": "be brief"}
    child = spawn(folders, "--method", "sd", "--system", system["content"])
    first = ask(child, "hello", "sd")
    assert first == library([system, user("hello")]) != library([user("hello")])
    history = [system, user("hello"), assistant(first)]
    second = ask(child, "who are you", "sd")
    assert second == library([*history, user("who are you")]) != library([system, user("who are you")])
    history += [user("who are you"), assistant(second)]

    child.sendline("/help")
    for command in SESSION_COMMANDS:
        child.expect_exact(command)
    child.expect_exact(PROMPT)
    child.sendline("/nope")
    child.expect_exact("unknown command /nope")
    child.expect_exact(PROMPT)
    child.sendline("/reset")
    child.expect_exact("[history cleared]")
    child.expect_exact(PROMPT)
    assert library([*history, user("hello")]) != first
    assert ask(child, "hello", "sd") == first  # the system prompt stayed, the turns went
    child.sendline("/exit")
    assert ends(child) == 0


@pytest.mark.parametrize(
    "method,leave",
    [(["--method", "specbranch", "--execution", "serial"], "/exit"), (["--method", "pearl"], "ctrl-d")],
    ids=["specbranch-serial", "pearl-worker"],
)
def test_ctrl_c_stops_the_answer_and_the_session_goes_on(folders, library, capsys, method, leave):
    target = folders[0]
    assert main(["generate", "hello", "--chat", "--json", "--target", target, "--dtype", "float32",
                 "--method", "ar", "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0
    generated = json.loads(capsys.readouterr().out)["text"]
    child = spawn(folders, *method)
    name = method[1]
    first = ask(child, "hello", name)
    assert first == generated

    child.sendline(LONG)
    child.expect_exact(LONG + "\r\n")
    child.expect(r"[a-z]")  # the answer is streaming
    child.sendintr()
    assert child.expect_exact([STOPPED, "finish: "]) == 0, "the answer ended before Ctrl-C stopped it"
    child.expect_exact(PROMPT)
    # the stopped exchange is not in the history, and the engine (and pearl's worker) still answers
    assert ask(child, "hi", name) == library([user("hello"), assistant(first), user("hi")])

    # (Ctrl-C at the prompt is not driven here: a SIGINT that lands between the prompt's print and
    # readline's wait is only noticed at the next key, which a loaded machine makes likely.)
    if leave == "/exit":
        child.sendline("/exit")
    else:
        child.sendeof()
    assert ends(child) == 0


def test_help_explains_every_option_and_the_session_commands():
    sub = build_parser()._subparsers._group_actions[0].choices["chat"]
    for action in sub._actions:
        if action.option_strings and action.dest not in ("help", "chat"):
            assert action.help, f"{action.option_strings} has no help text"
    text = sub.format_help()
    for flag in ("--system", "--target", "--draft", "--method", "--temperature", "--max-new-tokens"):
        assert flag in text
    for command in [*SESSION_COMMANDS, "/quit", "Ctrl-C", "Ctrl-D"]:
        assert command in text
    assert "--chat" not in text  # always on in chat


def test_a_tokenizer_without_chat_template_is_refused(tmp_path, capsys):
    plain = save_tiny_model_dir(tmp_path / "plain", seed=1)
    assert main(["chat", "--target", plain, "--method", "ar"]) == 2
    assert "no chat template" in capsys.readouterr().err


def test_piped_session_goes_on_after_a_question_too_long_for_the_context(tmp_path, monkeypatch, capsys):
    folder = chat_model_dir(tmp_path / "small", max_positions=64)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a" * 64 + "\nhello\n"))
    assert main(["chat", "--target", folder, "--method", "ar", "--dtype", "float32"]) == 0
    out, err = capsys.readouterr()
    assert "context window is 64 tokens" in err and "(/reset starts over)" in err
    pair = load_pair(folder, dtype="float32")
    answer = Engine(pair, "ar").generate([user("hello")], GenerationConfig(), chat=True).text
    assert out.count(PROMPT) == 3 and answer and answer in out
    assert "tok/s" not in out and "[ar] " in err  # the figures go to standard error
