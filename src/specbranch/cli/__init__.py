"""The `specbranch` command line: one module per command (generate, chat, bench, serve, hrad, models),
the shared option groups in `options` (most generated from the config dataclasses).

Every command loads models offline by default (HF_HUB_OFFLINE=1 unless --allow-download) and
prints user errors as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from specbranch.cli import bench, bench_serve, chat, generate, hrad, models, serve
from specbranch.errors import SpecBranchError

COMMANDS = (generate, chat, bench, serve, bench_serve, hrad, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specbranch",
        description="Lossless speculative decoding for Hugging Face causal LMs: "
        "autoregressive, speculative (SD), PEARL and SpecBranch.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `specbranch` command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecBranchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
