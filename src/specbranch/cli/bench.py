"""`specbranch bench`: methods side by side on the same prompts and models."""

from __future__ import annotations

import argparse
import sys

from specbranch.bench.run import PLACEMENTS
from specbranch.cli.options import (
    add_config_options,
    add_model_options,
    add_prompt_options,
    add_sampling_options,
    config_from_args,
    load_from_args,
    load_prompts,
    sampling_from_args,
)
from specbranch.config import SpeculativeConfig
from specbranch.errors import SpecBranchError
from specbranch.runtime import METHODS

DEFAULT_METHODS = ("ar", "sd", "pearl", "specbranch")


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmark methods side by side on the same prompts and models",
        description="Run every method on the same prompts (methods interleaved per prompt, one warm-up "
        "each), compare speed with AR from the same run, check greedy equality with AR, and write "
        "results.json, Spec-Bench answers, report.md and plots to --out.",
    )
    bench.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        metavar="SPEC",
        help=f"methods to compare: {', '.join(METHODS)}, the peers hf-assisted, hf-lookup (transformers), "
        "llamacpp, llamacpp-lookup (llama-cpp-python), or a variant with option "
        "overrides such as specbranch:k_max=1,epsilon=0.3, specbranch:backend=torch, ar:threads=1 or "
        "sd:draft_policy=svip,threshold=0.5; separated by spaces, commas or both (ar,sd,specbranch:k_max=1: "
        "a comma-separated piece with = before any : is an option of the method before it) "
        f"(default: {' '.join(DEFAULT_METHODS)})",
    )
    add_prompt_options(bench, "humaneval", 10, "")
    bench.add_argument("--repeats", type=int, default=1, help="timed runs per prompt and method (default 1)")
    bench.add_argument(
        "--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens (fixed length)"
    )
    bench.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="shared",
        help="shared (default): every method may use every core; split: each model gets its own half of "
        "the cores for every method (AR on the target's half; sd, hf-assisted and serial specbranch run "
        "each model on a half; the parallel methods as always), the analogue of a device per model",
    )
    bench.add_argument(
        "--baseline",
        metavar="SPEC",
        help="the spec every speedup and greedy check is against (one of --methods; default the first ar)",
    )
    bench.add_argument("--out", default="bench-results", help="output folder (default bench-results)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_options(bench)
    add_sampling_options(bench)
    group = bench.add_argument_group("method defaults (override per method in --methods)")
    add_config_options(group, SpeculativeConfig)
    bench.set_defaults(func=run)


def split_methods(words: list[str]) -> list[str]:
    """Method specs from --methods words, each word one spec or several separated by commas.

    A comma also separates a spec's options (`specbranch:k_max=1,epsilon=0.3`), so a piece
    continues the spec before it when it is an option: when it has a `=` before any `:`
    (`epsilon=0.3`, `draft_policy=svip:threshold=0.5`); any other piece (`sd`, `sd:gamma=8`)
    starts a new spec. Empty pieces (`ar,,sd`, a trailing comma) are skipped; an option with no
    spec before it in its word is an error.
    """
    specs: list[str] = []
    for word in words:
        start = len(specs)
        for piece in filter(None, (p.strip() for p in word.split(","))):
            if "=" not in piece.partition(":")[0]:
                specs.append(piece)
            elif len(specs) > start:
                specs[-1] += "," + piece
            else:
                raise SpecBranchError(f"--methods {word!r}: option {piece!r} follows no method")
    return specs


def run(args: argparse.Namespace) -> int:
    from specbranch.bench.methods import parse_method
    from specbranch.bench.report import table, write_outputs
    from specbranch.bench.run import BenchConfig, run_bench

    if args.repeats < 1 or args.max_new_tokens < 1:
        raise SpecBranchError("--repeats and --max-new-tokens must be >= 1")
    defaults = config_from_args(SpeculativeConfig, args)
    methods = [parse_method(m, defaults) for m in split_methods(args.methods)]
    if len({m.name for m in methods}) != len(methods):
        raise SpecBranchError("--methods lists the same method twice")
    prompts = load_prompts(args)
    pair = load_from_args(args)  # a draft is loaded whenever the pair has one
    if args.baseline is not None and args.baseline not in {m.name for m in methods}:
        raise SpecBranchError(f"--baseline {args.baseline!r} is not one of --methods")
    bench = BenchConfig(
        methods, prompts, args.max_new_tokens, sampling_from_args(args), args.repeats, args.chat, args.seed,
        args.ignore_eos, args.placement, args.baseline,
    )
    results = run_bench(pair, bench, progress=not args.no_progress)
    files = write_outputs(results, args.out)
    print(table(results["summary"]))
    print(f"wrote {', '.join(files)} to {args.out}", file=sys.stderr)
    return 0
