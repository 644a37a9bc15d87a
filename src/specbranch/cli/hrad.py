"""`specbranch hrad collect|train`: data for, and training of, SpecBranch's H-RAD predictor."""

from __future__ import annotations

import argparse
import json
import os
import sys

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
from specbranch.config import ParallelConfig
from specbranch.hrad.classes import HradClass
from specbranch.hrad.train import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    hrad = sub.add_parser(
        "hrad",
        help="H-RAD predictor: collect training data, train",
        description="H-RAD decides after each SpecBranch verification how much of the surviving branch to "
        "keep. `collect` runs SpecBranch on prompts and stores (target features, label) samples; `train` "
        "fits the predictor; use it with `--hrad PREDICTOR`.",
    )
    hrad_sub = hrad.add_subparsers(dest="hrad_command", required=True)
    _register_collect(hrad_sub)
    _register_train(hrad_sub)


def _register_collect(sub: argparse._SubParsersAction) -> None:
    hc = sub.add_parser(
        "collect",
        help="run SpecBranch on prompts and store H-RAD training samples",
        description="Run SpecBranch (full-length branches, kept whole) and store, after every branch hit, "
        "the target features z and a label from how much of that branch the next round accepted (0 none, "
        "1 part, 2 all). One record per prompt is appended to --out: an interrupted run keeps what it "
        "wrote, and rerunning the same command resumes after the last finished prompt.",
    )
    hc.add_argument("--out", required=True, help="data file to write (appended to and resumed if it exists)")
    add_prompt_options(hc, "gsm8k", 20, ", which the benchmark tables do not use")
    hc.add_argument("--layers", type=int, default=4, help="K, the target's last layers in z (default 4)")
    add_config_options(hc, ParallelConfig, ("k_max", "max_draft_len", "inline"), given_only=True)
    hc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_options(hc)
    add_sampling_options(hc)
    hc.set_defaults(func=run_collect)


def _register_train(sub: argparse._SubParsersAction) -> None:
    ht = sub.add_parser(
        "train",
        help="train the H-RAD predictor on collected samples",
        description="Train the 3-class MLP (3 layers, ReLU, dropout) on the samples of DATA files, with a "
        "stratified train/validation split and class-balanced loss; print validation accuracy and the "
        "confusion matrix; save the predictor with its metadata (model pair, K, sizes, classes, data).",
    )
    ht.add_argument("data", nargs="+", help="data files from `specbranch hrad collect` (same model pair)")
    ht.add_argument("--out", required=True, help="predictor file to write")
    add_config_options(ht, TrainConfig)
    ht.set_defaults(func=run_train)


def run_collect(args: argparse.Namespace) -> int:
    from specbranch.hrad.collect import CollectConfig, collect

    prompts = load_prompts(args)
    parallel = config_from_args(ParallelConfig, args, hrad=None)
    sampling = sampling_from_args(args)
    config = CollectConfig(args.layers, args.max_new_tokens, sampling, args.seed, args.chat, parallel)
    if args.backend == "auto":  # H-RAD reads the target's hidden states: transformers models
        args.backend = "torch"
    pair = load_from_args(args)
    summary = collect(pair, prompts, args.out, config, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from specbranch.hrad.data import read_data
    from specbranch.hrad.train import train_predictor

    header, features, labels, sampled = read_data(args.data)
    config = config_from_args(TrainConfig, args)
    counts = [int((labels == c).sum()) for c in HradClass]
    print(f"{len(labels)} samples, {features.shape[1]} features; classes {counts}", file=sys.stderr)
    names = [os.path.basename(p) for p in args.data]
    predictor = train_predictor(features, labels, header, config, names, sampled)
    predictor.save(args.out)
    print_validation(predictor.meta)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def print_validation(meta) -> None:
    """Validation accuracy, the confusion matrices (all, and per decoding mode), what acts where."""
    from specbranch.hrad.keeper import trusted_for_mode

    print(f"validation ({meta.val_samples} samples): accuracy {meta.val_accuracy:.3f}")
    tables = {"all": meta.val_confusion}
    if len(meta.val_confusion_by_mode) > 1:
        tables.update(meta.val_confusion_by_mode)
    for name, confusion in tables.items():
        print(f"confusion matrix, {name} (rows: true class, columns: predicted):")
        print(f"  {'':>44s} " + " ".join(f"{c:>6d}" for c in HradClass))
        for c, row in zip(HradClass, confusion, strict=True):
            print(f"  {c:d} {c.description:>42s} " + " ".join(f"{n:>6d}" for n in row))
    for mode in meta.val_confusion_by_mode:
        acted = [str(c) for c, ok in enumerate(trusted_for_mode(meta, mode == "greedy")) if ok]
        if acted:
            print(f"decoding {mode}: acts on classes {', '.join(acted)} (the others fall back to class 1)")
        else:
            print(f"decoding {mode}: off (--modes)")
