"""`specbranch bench-serve`: the server under concurrent streaming clients (`bench/load.py`)."""

from __future__ import annotations

import argparse
import sys

from specbranch.cli.options import add_model_options, add_prompt_options, load_from_args, load_prompts
from specbranch.errors import SpecBranchError

DEFAULT_METHODS = ("ar", "specbranch")


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench-serve",
        help="load benchmark: the OpenAI server under 1, 2, 4, 8 concurrent streaming clients",
        description="For each concurrency C, --max-batch setting and method (in that nesting, so the "
        "configurations of one concurrency run back to back), start the server (in this "
        "process, the models loaded once) and stream chat completions from C concurrent clients of the "
        "official openai client, each sending --requests-per-client prompts one after another (the "
        "datasets' prompts interleaved, the same for every configuration). Reports aggregate tokens/s, "
        "per-request tokens/s, time to first token and inter-chunk latency (p50/p95) and the server's "
        "mean batch size; writes results.json, report.md and concurrency.png to --out.",
    )
    bench.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="SPEC",
        help="methods served, each optionally with options as in `bench` (specbranch:backend=torch) "
        f"(default: {' '.join(DEFAULT_METHODS)})",
    )
    bench.add_argument(
        "--concurrency", nargs="+", type=int, default=[1, 2, 4, 8], metavar="C",
        help="numbers of concurrent clients (default 1 2 4 8)",
    )
    bench.add_argument(
        "--max-batch", nargs="+", default=["auto", "1"], metavar="N",
        help="server --max-batch settings to compare: a number, or auto (= the number of clients); "
        "1 is the one-request-at-a-time server (default: auto 1)",
    )
    bench.add_argument(
        "--requests-per-client", type=int, default=2, help="requests each client sends in turn (default 2)"
    )
    bench.add_argument("--max-tokens", type=int, default=128, help="max_tokens of a request (default 128)")
    bench.add_argument("--temperature", type=float, default=0.0, help="temperature (default 0: greedy)")
    add_prompt_options(bench, ["humaneval", "mt_bench", "code_edit"], 8, "")
    bench.add_argument(
        "--out", default="bench-serve-results", help="output folder (default bench-serve-results)"
    )
    bench.add_argument("--no-progress", action="store_true", help="print no line per configuration")
    add_model_options(bench)
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from specbranch.bench.load import LoadConfig, run_load
    from specbranch.bench.load_report import load_table, write_load_outputs
    from specbranch.bench.methods import parse_method
    from specbranch.cli.bench import split_methods
    from specbranch.runtime import REGISTRY
    from specbranch.server.scheduler import off_main_thread

    methods = [parse_method(m) for m in split_methods(args.methods)]
    peers = [m.name for m in methods if m.method not in REGISTRY]
    if peers:
        raise SpecBranchError(f"bench-serve serves our methods only, not {', '.join(peers)}")
    bad = [s for s in args.max_batch if s != "auto" and not (s.isdigit() and int(s) >= 1)]
    if bad or min(args.concurrency) < 1 or args.requests_per_client < 1 or args.max_tokens < 1:
        raise SpecBranchError("--max-batch takes auto or numbers >= 1; --concurrency, --requests-per-client "
                              "and --max-tokens must be >= 1")
    prompts = interleave(load_prompts(args))
    draft_needed = any(m.method != "ar" for m in methods)
    pair = off_main_thread(lambda: load_from_args(args, draft_needed=draft_needed))
    config = LoadConfig(methods, prompts, args.concurrency, args.max_batch, args.requests_per_client,
                        args.max_tokens, args.temperature)
    rows = run_load(pair, config, progress=not args.no_progress)
    described = {"methods": args.methods, "concurrency": args.concurrency, "max_batch": args.max_batch,
                 "requests_per_client": args.requests_per_client, "max_tokens": args.max_tokens,
                 "temperature": args.temperature, "datasets": args.dataset, "pair": pair.name,
                 "backend": pair.backend}
    files = write_load_outputs(rows, described, args.out)
    print(load_table(rows))
    print(f"wrote {', '.join(files)} to {args.out}", file=sys.stderr)
    return 0


def interleave(prompts: list) -> list:
    """The prompts with their datasets interleaved (a, b, c, a, b, c, ...), so that every client's
    share mixes them."""
    by_dataset: dict[str, list] = {}
    for p in prompts:
        by_dataset.setdefault(p.dataset, []).append(p)
    columns = list(by_dataset.values())
    return [col[i] for i in range(max(map(len, columns))) for col in columns if i < len(col)]
