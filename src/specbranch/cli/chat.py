"""`specbranch chat`: a multi-turn terminal session with the chat template and streamed answers.

The conversation is a list of chat messages (`{"role", "content"}`; an optional system message
first) that each question extends; the whole list goes through the tokenizer's chat template
for every answer. One Engine (and, for a parallel method, one draft worker process) serves the
whole session and is closed when it ends.

Ctrl-C while an answer streams asks it to stop at the end of the current round, so the decoder
is never torn mid-round and the next question starts a fresh request on the same engine; the
interrupted question and its partial answer are dropped from the history. A second Ctrl-C
before the round ends leaves the session. Ctrl-C at the prompt clears the line; a second one in
a row leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from specbranch.cli.generate import print_figures
from specbranch.cli.options import (
    add_method_options,
    add_model_options,
    add_sampling_options,
    config_from_args,
    load_from_args,
    method_options,
    sampling_from_args,
)
from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.errors import SpecBranchError, WorkerError

if TYPE_CHECKING:
    from specbranch.engine import Engine, GenerationResult
    from specbranch.models import ModelPair

PROMPT = "> "
SESSION_COMMANDS = {
    "/reset": "forget the conversation (the --system prompt stays)",
    "/help": "list these commands",
    "/exit": "leave the session (also /quit or Ctrl-D)",
}
ALIASES = {"/quit": "/exit"}
KEYS = (
    "Ctrl-C while an answer streams stops it at the end of the round (that question and its partial "
    "answer are left out of the history; a second Ctrl-C before then leaves); Ctrl-C at the prompt "
    "clears the line, twice in a row leaves."
)
STOPPED = "[stopped; this question and its partial answer are left out of the history]"


def register(sub: argparse._SubParsersAction) -> None:
    commands = "\n".join(f"  {name:8} {text}" for name, text in SESSION_COMMANDS.items())
    chat = sub.add_parser(
        "chat",
        help="an interactive multi-turn chat in the terminal",
        description=textwrap.fill(
            "A multi-turn chat with the model pair in the terminal: each question and the conversation "
            "so far go through the tokenizer's chat template; answers stream as they are committed, each "
            "followed by its speed and mean accepted length. Answers are exactly what the target alone "
            "would produce (greedy) or have exactly its distribution (sampling)."
        ),
        epilog=f"in-session commands:\n{commands}\n\n{textwrap.fill(KEYS)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--system", metavar="TEXT", help="system prompt, first in the conversation")
    add_model_options(chat)
    add_sampling_options(chat)
    _hide(chat, "chat")
    add_method_options(chat)
    chat.set_defaults(func=run)


def _hide(parser: argparse.ArgumentParser, dest: str) -> None:
    """Leave a shared option out of --help (here `--chat`: chat always applies the template)."""
    for action in parser._actions:
        if action.dest == dest:
            action.help = argparse.SUPPRESS


def run(args: argparse.Namespace) -> int:
    config = GenerationConfig(args.max_new_tokens, sampling_from_args(args), args.seed)
    spec = config_from_args(SpeculativeConfig, args)
    options = method_options(args)
    pair = load_from_args(args, draft_needed=args.method != "ar")
    if not getattr(pair.tokenizer, "chat_template", None):
        raise SpecBranchError("this tokenizer has no chat template, which chat needs; use generate instead")
    with _open_engine(pair, args.method, spec, options) as engine:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
        print(f"chat with {pair.name} ({args.method}); /help lists the commands", file=sys.stderr)
        Session(engine, config, args.system).loop()
    return 0


def _open_engine(pair: ModelPair, method: str, spec: SpeculativeConfig, options: dict) -> Engine:
    """The session's Engine, built with SIGINT blocked.

    A worker process the method spawns inherits the blocked SIGINT, so Ctrl-C on the terminal
    (sent to the whole foreground process group) reaches only this process, which stops the
    answer and keeps the worker. A Ctrl-C pressed while the engine starts ends the session once it
    has started.
    """
    from specbranch.engine import Engine

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return Engine(pair, method, spec, **options)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class _StopRequest:
    """While an answer streams: the first SIGINT sets `requested` (the answer stops at the end of
    the round), a second one raises KeyboardInterrupt (the session ends)."""

    def __enter__(self) -> _StopRequest:
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


def stream_answer(engine: Engine, messages: list[dict], config: GenerationConfig) -> GenerationResult | None:
    """Print the answer to `messages` as it is committed; its result, or None when Ctrl-C stopped it."""
    chunks = engine.stream(messages, config, chat=True)
    try:
        with _StopRequest() as stop:
            for chunk in chunks:
                print(chunk.text, end="", flush=True)
                if chunk.result is not None:
                    return chunk.result
                if stop.requested:
                    return None
    finally:
        chunks.close()
        print(flush=True)
    raise AssertionError("stream ended without a result")


@dataclass
class Session:
    """The conversation and the prompt loop.

    messages: the conversation so far, the system message (if any) first.
    """

    engine: Engine
    config: GenerationConfig
    system: str | None = None
    messages: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def loop(self) -> None:
        """Read and answer lines until /exit, Ctrl-D or a second Ctrl-C in a row."""
        interrupted = False
        while True:
            try:
                line = input(PROMPT).strip()
            except EOFError:
                print(file=sys.stderr)
                return
            except KeyboardInterrupt:
                if interrupted:
                    print(file=sys.stderr)
                    return
                print("\n(line cleared; Ctrl-C again, Ctrl-D or /exit leaves)", file=sys.stderr)
                interrupted = True
                continue
            interrupted = False
            if line.startswith("/"):
                if not self.command(line):
                    return
            elif line:
                self.ask(line)

    def command(self, line: str) -> bool:
        """Run an in-session command; False when the session should end."""
        name = line.split()[0]
        name = ALIASES.get(name, name)
        if name == "/exit":
            return False
        if name == "/reset":
            self.reset()
            print("[history cleared]", file=sys.stderr)
        elif name == "/help":
            for command, text in SESSION_COMMANDS.items():
                print(f"  {command:8} {text}", file=sys.stderr)
            print(KEYS, file=sys.stderr)
        else:
            print(f"unknown command {name}; /help lists the commands", file=sys.stderr)
        return True

    def ask(self, question: str) -> None:
        """Answer `question` after the conversation so far; keep both unless the answer was stopped."""
        turn = [*self.messages, {"role": "user", "content": question}]
        try:
            result = stream_answer(self.engine, turn, self.config)
        except WorkerError:
            raise
        except SpecBranchError as exc:  # e.g. the conversation outgrew the context window
            print(f"error: {exc} (/reset starts over)", file=sys.stderr)
            return
        if result is None:
            print(STOPPED, file=sys.stderr)
            return
        self.messages = [*turn, {"role": "assistant", "content": result.text}]
        print_figures(self.engine.method, result.metrics, result.finish_reason)
