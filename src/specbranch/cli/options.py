"""Option groups shared by the commands, most of them generated from the config dataclasses.

A config field with `help` in its metadata (`specbranch.config.option`) becomes `--field-name`
with that help, its type and its default; `config_from_args` reads the values back. Options
that are no config field (model loading, prompts) are written out here once.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from specbranch.config import GenerationConfig, ParallelConfig, SamplingParams, SpeculativeConfig, applies_to
from specbranch.datasets import DATASETS
from specbranch.errors import SpecBranchError
from specbranch.models.builtin import DEFAULT_PAIR, PAIRS
from specbranch.models.pair import BACKENDS
from specbranch.runtime import REGISTRY, method_info

ArgGroup = argparse._ArgumentGroup | argparse.ArgumentParser


def flag(name: str) -> str:
    """`max_new_tokens` -> `--max-new-tokens`."""
    return "--" + name.replace("_", "-")


def _argparse_kind(hint: Any) -> dict:
    """argparse settings for a field's type: type=, choices=, or a store_true flag."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return {"choices": list(args)}
    if args:  # X | None, or tuple[X, ...] (its nargs come with the field's metadata)
        return _argparse_kind(args[0])
    if hint is bool:
        return {"action": "store_true"}
    return {"type": hint}


def add_config_options(
    group: ArgGroup, cls: type, names: tuple[str, ...] | None = None, given_only: bool = False
) -> None:
    """`--FIELD` options for the CLI-visible fields of dataclass `cls` (all, or those in `names`).

    given_only: options left off the command line are absent from the namespace (their
    dataclass defaults then apply, and `config_from_args` can tell what the user gave).
    """
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if "help" not in f.metadata or f.metadata.get("cli", True) is False:
            continue
        if names is not None and f.name not in names:
            continue
        extra = {k: v for k, v in f.metadata.items() if k in ("metavar", "nargs", "choices")}
        kind = _argparse_kind(hints[f.name])
        default = f.default if f.default is not MISSING else None
        shown = "" if default is None or default is False or default == () else f" (default {_text(default)})"
        group.add_argument(
            flag(f.name),
            default=argparse.SUPPRESS if given_only else default,
            help=f.metadata["help"] + shown,
            **kind,
            **extra,
        )


def _text(default: Any) -> str:
    return " ".join(map(str, default)) if isinstance(default, tuple) else str(default)


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of `cls` from the options of its fields found in `args` (plus overrides);
    list values (nargs options) become the tuples the dataclass holds."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**(values | overrides))


def given_fields(cls: type, args: argparse.Namespace) -> list[Field]:
    """The fields of `cls` the user gave on the command line (see `given_only`)."""
    return [f for f in fields(cls) if hasattr(args, f.name) and getattr(args, f.name) not in (None, False)]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose and place the model pair (shared by every command)."""
    group = parser.add_argument_group("models")
    group.add_argument(
        "--pair",
        choices=sorted(PAIRS),
        help=f"built-in offline model pair (default {DEFAULT_PAIR} when no --target is given)",
    )
    group.add_argument("--target", help="target model: local folder, .gguf file, builtin:NAME, or hub id")
    group.add_argument(
        "--draft", help="draft model (same forms as --target); must share the target's vocabulary"
    )
    group.add_argument(
        "--device", default="cpu", help="device of the target, e.g. cpu, cuda, cuda:1 (default cpu)"
    )
    group.add_argument("--draft-device", help="device of the draft (default: same as --device)")
    group.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help=(
            "weights dtype (default auto: bfloat16 on CUDA and on CPUs with native bf16 such as "
            "AVX512-BF16, else float32; an int8 draft is always float32)"
        ),
    )
    group.add_argument(
        "--draft-quantize",
        default="auto",
        choices=["auto", "int8", "none"],
        help="dynamic int8 quantization of the draft only (default auto: int8 on CPU, none on CUDA)",
    )
    group.add_argument(
        "--backend",
        default="auto",
        choices=list(BACKENDS),
        help=(
            "what runs the models: llama.cpp (GGUF files as they are: .gguf inputs and the built-in "
            "pairs; CPU), torch (transformers: model folders, hub ids, CUDA; GGUF files are dequantized "
            "once into the cache). Default auto: llama.cpp for .gguf inputs and built-in pairs on the "
            "CPU, torch otherwise"
        ),
    )
    group.add_argument("--threads", type=int, help="CPU threads, torch's and llama.cpp's (default: torch's)")
    group.add_argument(
        "--allow-download",
        action="store_true",
        help="allow fetching a hub id from the network (off by default: everything loads offline)",
    )


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Sampling and stopping options (generate, bench, hrad collect)."""
    group = parser.add_argument_group("sampling")
    add_config_options(group, GenerationConfig, ("max_new_tokens",))
    add_config_options(group, SamplingParams)
    add_config_options(group, GenerationConfig, ("seed",))
    group.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    return config_from_args(SamplingParams, args)


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--method and the options of the speculative methods (speed only; never the output distribution)."""
    methods = "; ".join(f"{name}: {info.summary}" for name, info in REGISTRY.items())
    parser.add_argument(
        "--method", choices=list(REGISTRY), default="specbranch", help=f"decoding method ({methods}) "
        "(default specbranch)"
    )
    add_config_options(parser.add_argument_group("speculative decoding"), SpeculativeConfig)
    parallel = [name for name, info in REGISTRY.items() if info.parallel]
    group = parser.add_argument_group(f"parallel methods ({', '.join(parallel)}; --lookup also sd)")
    add_config_options(group, ParallelConfig, given_only=True)


def method_options(args: argparse.Namespace) -> dict:
    """Engine options for the chosen method from the parallel-method flags that were given (a
    clear error for a flag the method does not take, and for --draft-policy with ar)."""
    if getattr(args, "draft_policy", None) and args.method == "ar":
        raise SpecBranchError("--draft-policy applies to the speculative methods, not ar")
    info = method_info(args.method)
    given = given_fields(ParallelConfig, args)
    refused = [f for f in given if f.name not in info.options]
    if refused:
        takers = [n for n in REGISTRY if all(applies_to(f, n) for f in refused)]
        names = ", ".join(flag(f.name) for f in refused)
        raise SpecBranchError(f"{names} apply to --method {' or '.join(takers)} only")
    return {f.name: getattr(args, f.name) for f in given}


def add_prompt_options(
    parser: argparse.ArgumentParser, dataset: str | list[str], num_prompts: int, note: str
) -> None:
    """Where prompts come from (bench, bench-serve, hrad collect): bundled --dataset slices or a
    --prompts-file."""
    datasets = [dataset] if isinstance(dataset, str) else dataset
    parser.add_argument(
        "--dataset",
        nargs="+",
        default=datasets,
        choices=list(DATASETS),
        help=f"bundled prompt sets (default {' '.join(datasets)}{note}); mt_bench uses each question's "
        "first turn; code_edit: input-grounded edits of given functions",
    )
    parser.add_argument("--prompts-file", help="a JSONL file of prompts instead of --dataset")
    parser.add_argument(
        "--prompt-field", default="prompt", help="field of --prompts-file holding the prompt (default prompt)"
    )
    parser.add_argument(
        "--skip",
        type=int,
        default=0,
        help="prompts to skip at the start of each dataset, e.g. to stay clear of the ones benchmarks "
        "report on (default 0)",
    )
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=num_prompts,
        help=f"prompts taken from each dataset after --skip (default {num_prompts})",
    )


def load_prompts(args: argparse.Namespace) -> list:
    """--skip then --num-prompts prompts of each --dataset, or of --prompts-file."""
    from specbranch.datasets import load_dataset, load_prompts_file

    if args.num_prompts < 1 or args.skip < 0:
        raise SpecBranchError("--num-prompts must be >= 1 and --skip >= 0")
    end = args.skip + args.num_prompts
    if args.prompts_file:
        prompts = load_prompts_file(args.prompts_file, args.prompt_field, end)[args.skip :]
    else:
        prompts = [p for name in args.dataset for p in load_dataset(name, end)[args.skip :]]
    if not prompts:
        raise SpecBranchError(f"--skip {args.skip} leaves no prompts")
    return prompts


def load_from_args(args: argparse.Namespace, draft_needed: bool = True):
    """The ModelPair the model options describe (the draft only when needed or named)."""
    from specbranch.models import load_pair

    if args.allow_download:
        os.environ.pop("HF_HUB_OFFLINE", None)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print("loading models ...", file=sys.stderr, flush=True)
    pair = load_pair(
        args.target,
        args.draft if draft_needed or args.draft is not None else None,
        pair=args.pair,
        device=args.device,
        draft_device=args.draft_device,
        dtype=args.dtype,
        draft_quantize=None if args.draft_quantize == "none" else args.draft_quantize,
        allow_download=args.allow_download,
        backend=args.backend,
    )
    if pair.tokenizer is None:
        raise SpecBranchError(f"the model has no tokenizer; {args.command} needs one to read prompts")
    return pair
