"""`specbranch generate`: one prompt, printed whole, streamed or as JSON, with the run's figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from specbranch.cli.drafts import OriginText, legend, rounds_line
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
from specbranch.errors import SpecBranchError
from specbranch.metrics import GenerationMetrics

if TYPE_CHECKING:
    from specbranch.engine import Engine, GenerationResult


def register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        help="generate text from a prompt",
        description="Generate a continuation of PROMPT (the text, - for standard input, or --prompt-file). "
        "Output is exactly what the target alone would produce (greedy) or has exactly its distribution "
        "(sampling); the method changes speed only.",
    )
    gen.add_argument(
        "prompt",
        nargs="?",
        help="the prompt text, or - to read it from standard input (give PROMPT, - or --prompt-file)",
    )
    gen.add_argument(
        "--prompt-file",
        metavar="PATH",
        help="read the prompt from a UTF-8 file. Text read from a file or from - is used verbatim except "
        "for one final line ending, which is dropped (the newline editors add)",
    )
    gen.add_argument("--stop", action="append", help="stop string (repeatable); the output ends before it")
    gen.add_argument("--stream", action="store_true", help="print tokens as they are committed")
    gen.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"text", "token_ids", "origins", "metrics"} (origins: where each token '
        "came from: draft, branch, lookup or target)",
    )
    gen.add_argument(
        "--show-drafts",
        action="store_true",
        help="stream the tokens coloured by origin (green: draft token accepted, magenta: from a branch "
        "other than the likeliest root, cyan: prompt lookup, yellow: emitted by the target itself) and print "
        "a legend and the tokens each round committed; plain text when the output is not a terminal (shows "
        "the tokens as generated, a stop string included)",
    )
    add_model_options(gen)
    add_sampling_options(gen)
    add_method_options(gen)
    gen.set_defaults(func=run)


def read_prompt(args: argparse.Namespace) -> str:
    """The prompt from exactly one of PROMPT, `-` (standard input) or --prompt-file.

    Text read from standard input or a file is UTF-8, taken byte for byte except for one final
    line ending (`\\n` or `\\r\\n`), which is dropped. An empty prompt is an error.
    """
    if (args.prompt is None) == (args.prompt_file is None):
        given = "none was" if args.prompt is None else "both PROMPT and --prompt-file were"
        raise SpecBranchError(
            f"give exactly one prompt: PROMPT, - (standard input) or --prompt-file PATH ({given} given)"
        )
    if args.prompt_file is not None:
        where = f"--prompt-file {args.prompt_file}"
        try:
            data = Path(args.prompt_file).read_bytes()
        except OSError as exc:
            raise SpecBranchError(f"cannot read {where}: {exc.strerror or exc}") from None
    elif args.prompt == "-":
        where, data = "standard input", sys.stdin.buffer.read()
    else:
        where, data = "PROMPT", None
    text = args.prompt if data is None else _decode(data, where)
    if not text:
        raise SpecBranchError(f"the prompt is empty ({where})")
    return text


def _decode(data: bytes, where: str) -> str:
    """UTF-8 text of `data` less one final line ending."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecBranchError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text


def run(args: argparse.Namespace) -> int:
    from specbranch.engine import Engine

    prompt = read_prompt(args)
    sampling = sampling_from_args(args)
    config = GenerationConfig(args.max_new_tokens, sampling, args.seed, tuple(args.stop or ()))
    spec = config_from_args(SpeculativeConfig, args)
    options = method_options(args)
    pair = load_from_args(args, draft_needed=args.method != "ar")
    with Engine(pair, args.method, spec, **options) as engine:
        result = _stream(engine, prompt, config, args)
    if args.json:
        keys = ("text", "token_ids", "origins", "metrics")
        print(json.dumps({k: v for k, v in result.to_dict().items() if k in keys}))
        return 0
    print(("\n" if args.stream or args.show_drafts else result.text + "\n"), end="")
    if args.show_drafts:
        print(legend(sys.stdout.isatty()), file=sys.stderr)
        print(rounds_line(result.metrics.accept_lengths), file=sys.stderr)
    print_figures(args.method, result.metrics, result.finish_reason)
    return 0


def _stream(
    engine: Engine, prompt: str, config: GenerationConfig, args: argparse.Namespace
) -> GenerationResult:
    """Run the request; with --stream print the text as it is committed, with --show-drafts the
    tokens coloured by origin (`cli.drafts`)."""
    shown = None
    if args.show_drafts and not args.json:
        shown = OriginText(engine.pair.tokenizer, sys.stdout.isatty())
    result = None
    for chunk in engine.stream(prompt, config, chat=args.chat):
        if shown is not None:
            print(shown.feed(chunk.token_ids, chunk.origins), end="", flush=True)
        elif args.stream and not args.json:
            print(chunk.text, end="", flush=True)
        result = chunk.result or result
    return result


def print_figures(method: str, m: GenerationMetrics, finish_reason: str) -> None:
    """The run's speed and speculative figures, on standard error."""
    print(
        f"[{method}] {m.new_tokens} tokens in {m.wall_seconds:.2f}s = {m.tokens_per_second:.2f} tok/s; "
        f"mean accepted length {m.mean_accepted_length:.2f}; acceptance rate {m.acceptance_rate:.2f}; "
        f"finish: {finish_reason}",
        file=sys.stderr,
    )
    if m.cost_ratio:
        print(
            f"  cost ratio c = {m.cost_ratio:.2f} -> draft length {m.draft_length}; rollback rate "
            f"{m.rollback_rate:.2f}; branch hit rate {m.branch_hit_rate:.2f}; overlap efficiency "
            f"{m.overlap_efficiency:.2f}",
            file=sys.stderr,
        )
    decisions = m.hrad_keep_none + m.hrad_keep_confident + m.hrad_keep_all
    if decisions:
        print(
            f"  H-RAD: {decisions} decisions (keep none {m.hrad_keep_none}, while confident "
            f"{m.hrad_keep_confident}, all {m.hrad_keep_all}); overhead {100 * m.hrad_overhead:.2f}% of "
            "decode time",
            file=sys.stderr,
        )
