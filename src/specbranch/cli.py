"""The `specbranch` command line: `generate` (and the subcommands later issues add).

Every command loads models offline by default (HF_HUB_OFFLINE=1 unless --allow-download) and
prints user errors as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from specbranch.models.builtin import DEFAULT_PAIR, MODELS, PAIRS, installed_models
from specbranch.decoders import METHODS
from specbranch.errors import SpecBranchError


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
    group.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    group.add_argument(
        "--allow-download",
        action="store_true",
        help="allow fetching a hub id from the network (off by default: everything loads offline)",
    )


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Sampling and stopping options (shared by generate and bench)."""
    group = parser.add_argument_group("sampling")
    group.add_argument(
        "--max-new-tokens", type=int, default=128, help="tokens to generate at most (default 128)"
    )
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default 0)")
    group.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (default 0 = off)")
    group.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1 = off)"
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seed of the per-request random generators (default 0)"
    )
    group.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")


def add_prompt_options(parser: argparse.ArgumentParser, dataset: str, num_prompts: int, note: str) -> None:
    """Where prompts come from (bench, hrad collect): bundled --dataset slices or a --prompts-file."""
    parser.add_argument(
        "--dataset",
        nargs="+",
        default=[dataset],
        choices=["humaneval", "gsm8k", "mt_bench"],
        help=f"bundled prompt sets (default {dataset}{note}); mt_bench uses each question's first turn",
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


def add_speculative_options(group: argparse._ArgumentGroup) -> None:
    """--gamma, --draft-sampling, --draft-policy (generate: the method's; bench: every method's default)."""
    group.add_argument("--gamma", type=int, default=4, help="draft length per round for sd (default 4)")
    group.add_argument(
        "--draft-policy",
        metavar="NAME[:OPT=V,...]",
        help="draft-length policy: fixed (gamma tokens), heuristic (transformers' +2/-1 schedule with "
        "a 0.4 confidence stop; options start, threshold), adaedl (entropy lower bound with an "
        "adaptive threshold; cap, beta, start, step), svip (entropy bound, fixed threshold; cap, "
        "threshold, beta), tapout (UCB1 bandit over heuristic/adaedl/svip; cap), cost (the measured "
        "cost ratio c; length). Default: the method's own (sd: fixed; pearl: its schedule; "
        "specbranch: cost). For pearl/specbranch it runs on the draft side under the method's cap",
    )
    group.add_argument(
        "--draft-sampling",
        choices=["sample", "greedy"],
        default="sample",
        help="sample: draft x ~ q, verified by rule 1 (roots: k samples, rule 4); greedy: draft "
        "argmax q, verified by rule 2 (roots: draft top-k, rule 3) (default sample; at temperature 0 "
        "both are the greedy rules)",
    )


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--method and the options of the speculative methods (speed only; never the output distribution)."""
    parser.add_argument(
        "--method", choices=METHODS, default="specbranch", help="decoding method (default specbranch)"
    )
    add_speculative_options(parser.add_argument_group("speculative decoding"))
    group = parser.add_argument_group("parallel methods (pearl, specbranch)")
    group.add_argument(
        "--inline",
        action="store_true",
        help="run draft and target one after the other in this process instead of a draft worker "
        "process (same tokens for the same seed; slower; the fallback for a single device)",
    )
    group.add_argument(
        "--k-max", type=int, help="specbranch: most branches at a branch point, k = max(1, floor(k_max * "
        "(1 - draft confidence))) (default 4)"
    )
    group.add_argument(
        "--epsilon",
        type=float,
        help="specbranch: a branch stops at its first position with draft confidence below this "
        "(default 0.2)",
    )
    group.add_argument(
        "--hrad",
        metavar="PREDICTOR",
        help="specbranch: H-RAD predictor file (from `specbranch hrad train`) deciding after each "
        "verification how much of the surviving branch to keep; 'auto' = the predictor shipped for a "
        "built-in pair (off for other pairs), 'none' = off (default auto; the shipped predictor acts "
        "at greedy decoding only, where it pays)",
    )
    group.add_argument(
        "--max-draft-len",
        type=int,
        help="branch length (pearl: initial block, grows to 2x while accepted) (default: the measured "
        "cost ratio c = target verify time / draft step time)",
    )
    group.add_argument(
        "--draft-threads", type=int, help="torch threads of the draft worker (default: half the cores)"
    )
    group.add_argument(
        "--target-threads", type=int, help="torch threads of the target side (default: the other half)"
    )
    group.add_argument(
        "--master-addr", help="rendezvous address of the two processes (default 127.0.0.1)"
    )
    group.add_argument("--master-port", type=int, help="rendezvous port (default 0: any free port)")
    group.add_argument(
        "--worker-timeout",
        type=float,
        help="seconds a draft worker may take to answer before it counts as hung (default 60)",
    )


PARALLEL_FLAGS = (
    "inline", "k_max", "epsilon", "hrad", "max_draft_len", "draft_threads", "target_threads", "master_addr",
    "master_port", "worker_timeout",
)


def method_options(args: argparse.Namespace) -> dict:
    """Engine options for the chosen method from the parallel-method flags that were given."""
    if args.method not in ("pearl", "specbranch"):
        given = [f"--{f.replace('_', '-')}" for f in PARALLEL_FLAGS if getattr(args, f) not in (None, False)]
        if given:
            raise SpecBranchError(f"{', '.join(given)} apply to --method pearl or specbranch only")
        return {}
    options = {f: getattr(args, f) for f in PARALLEL_FLAGS if getattr(args, f) not in (None, False)}
    if args.method == "pearl" and {"k_max", "epsilon", "hrad"} & set(options):
        raise SpecBranchError("--k-max, --epsilon and --hrad apply to --method specbranch only")
    return options


def load_from_args(args: argparse.Namespace):
    """The ModelPair the model options describe."""
    from specbranch.models import load_pair

    if args.allow_download:
        os.environ.pop("HF_HUB_OFFLINE", None)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    draft_needed = getattr(args, "method", "sd") != "ar" or args.draft is not None
    print("loading models ...", file=sys.stderr, flush=True)
    return load_pair(
        args.target,
        args.draft if draft_needed else None,
        pair=args.pair,
        device=args.device,
        draft_device=args.draft_device,
        dtype=args.dtype,
        draft_quantize=None if args.draft_quantize == "none" else args.draft_quantize,
        allow_download=args.allow_download,
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
    from specbranch.engine import Engine

    sampling = SamplingParams(args.temperature, args.top_k, args.top_p)
    config = GenerationConfig(args.max_new_tokens, sampling, args.seed, tuple(args.stop or ()))
    spec = SpeculativeConfig(args.gamma, args.draft_sampling, args.draft_policy)
    options = method_options(args)
    if args.draft_policy and args.method == "ar":
        raise SpecBranchError("--draft-policy applies to the speculative methods, not ar")
    pair = load_from_args(args)
    if pair.tokenizer is None:
        raise SpecBranchError("the model has no tokenizer; generate needs one to read the prompt")
    with Engine(pair, args.method, spec, **options) as engine:
        result = None
        for chunk in engine.stream(args.prompt, config, chat=args.chat):
            if args.stream and not args.json:
                print(chunk.text, end="", flush=True)
            result = chunk.result or result
    if args.json:
        print(
            json.dumps(
                {"text": result.text, "token_ids": result.token_ids, "metrics": result.metrics.to_dict()}
            )
        )
        return 0
    print(("\n" if args.stream else result.text + "\n"), end="")
    m = result.metrics
    print(
        f"[{args.method}] {m.new_tokens} tokens in {m.wall_seconds:.2f}s = {m.tokens_per_second:.2f} tok/s; "
        f"mean accepted length {m.mean_accepted_length:.2f}; acceptance rate {m.acceptance_rate:.2f}; "
        f"finish: {result.finish_reason}",
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
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from specbranch.bench.methods import parse_method
    from specbranch.bench.report import table, write_outputs
    from specbranch.bench.run import BenchConfig, run_bench
    from specbranch.config import SamplingParams, SpeculativeConfig

    if args.repeats < 1 or args.max_new_tokens < 1:
        raise SpecBranchError("--repeats and --max-new-tokens must be >= 1")
    defaults = SpeculativeConfig(args.gamma, args.draft_sampling, args.draft_policy)
    methods = [parse_method(m, defaults) for m in args.methods]
    if len({m.name for m in methods}) != len(methods):
        raise SpecBranchError("--methods lists the same method twice")
    prompts = load_prompts(args)
    sampling = SamplingParams(args.temperature, args.top_k, args.top_p)
    args.method = "bench"  # a draft is loaded whenever the pair has one
    pair = load_from_args(args)
    if pair.tokenizer is None:
        raise SpecBranchError("the model has no tokenizer; bench needs one to read the prompts")
    bench = BenchConfig(
        methods, prompts, args.max_new_tokens, sampling, args.repeats, args.chat, args.seed, args.ignore_eos
    )
    results = run_bench(pair, bench, progress=not args.no_progress)
    files = write_outputs(results, args.out)
    print(table(results["summary"]))
    print(f"wrote {', '.join(files)} to {args.out}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from specbranch.config import SpeculativeConfig
    from specbranch.engine import Engine
    from specbranch.server import ServerConfig, create_app

    if args.max_queue < 1 or args.request_timeout <= 0 or args.default_max_tokens < 1:
        raise SpecBranchError("--max-queue must be >= 1, --request-timeout > 0, --default-max-tokens >= 1")
    spec = SpeculativeConfig(args.gamma, args.draft_sampling, args.draft_policy)
    options = method_options(args)
    pair = load_from_args(args)
    name = args.served_model_name or (args.target or f"specbranch/{args.pair or DEFAULT_PAIR}")
    config = ServerConfig(name, args.method, args.max_queue, args.request_timeout, args.default_max_tokens)
    app = create_app(pair, lambda: Engine(pair, args.method, spec, **options), config)
    url = f"http://{args.host}:{args.port}/v1"
    print(f"serving {name!r} with --method {args.method} on {url}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_hrad_collect(args: argparse.Namespace) -> int:
    from specbranch.config import ParallelConfig, SamplingParams
    from specbranch.hrad.collect import CollectConfig, collect

    prompts = load_prompts(args)
    sampling = SamplingParams(args.temperature, args.top_k, args.top_p)
    given = {k: getattr(args, k) for k in ("k_max", "max_draft_len", "inline")}
    parallel = ParallelConfig(**{k: v for k, v in given.items() if v not in (None, False)}, hrad=None)
    config = CollectConfig(args.layers, args.max_new_tokens, sampling, args.seed, args.chat, parallel)
    args.method = "specbranch"
    pair = load_from_args(args)
    if pair.tokenizer is None:
        raise SpecBranchError("the model has no tokenizer; hrad collect needs one to read the prompts")
    summary = collect(pair, prompts, args.out, config, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def cmd_hrad_train(args: argparse.Namespace) -> int:
    from specbranch.hrad.data import read_data
    from specbranch.hrad.keeper import trusted_for_mode
    from specbranch.hrad.predictor import CLASSES
    from specbranch.hrad.train import TrainConfig, train_predictor

    header, features, labels, sampled = read_data(args.data)
    config = TrainConfig(
        tuple(args.hidden), args.dropout, args.epochs, args.batch_size, args.lr, args.weight_decay,
        args.val_fraction, args.seed, tuple(args.modes),
    )
    counts = [int((labels == c).sum()) for c in range(len(CLASSES))]
    print(f"{len(labels)} samples, {features.shape[1]} features; classes {counts}", file=sys.stderr)
    names = [os.path.basename(p) for p in args.data]
    predictor = train_predictor(features, labels, header, config, names, sampled)
    predictor.save(args.out)
    meta = predictor.meta
    print(f"validation ({meta.val_samples} samples): accuracy {meta.val_accuracy:.3f}")
    tables = {"all": meta.val_confusion}
    if len(meta.val_confusion_by_mode) > 1:
        tables.update(meta.val_confusion_by_mode)
    for name, confusion in tables.items():
        print(f"confusion matrix, {name} (rows: true class, columns: predicted):")
        print(f"  {'':>44s} " + " ".join(f"{c:>6d}" for c in range(len(CLASSES))))
        for c, row in enumerate(confusion):
            print(f"  {c} {CLASSES[c]:>42s} " + " ".join(f"{n:>6d}" for n in row))
    for mode in meta.val_confusion_by_mode:
        acted = [str(c) for c, ok in enumerate(trusted_for_mode(meta, mode == "greedy")) if ok]
        if acted:
            print(f"decoding {mode}: acts on classes {', '.join(acted)} (the others fall back to class 1)")
        else:
            print(f"decoding {mode}: off (--modes)")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    installed = installed_models()
    print("built-in models:")
    for name, model in MODELS.items():
        print(f"  {name:22s} {'installed' if installed[name] else 'missing  '}  {model.description}")
    print("built-in pairs (target <- draft):")
    for name, (target, draft) in PAIRS.items():
        print(f"  {name:22s} {target} <- {draft}{'  (default)' if name == DEFAULT_PAIR else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specbranch",
        description="Lossless speculative decoding for Hugging Face causal LMs: "
        "autoregressive, speculative (SD), PEARL and SpecBranch.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate",
        help="generate text from a prompt",
        description="Generate a continuation of PROMPT. Output is exactly what the target alone would "
        "produce (greedy) or has exactly its distribution (sampling); the method changes speed only.",
    )
    gen.add_argument("prompt", help="the prompt text")
    gen.add_argument("--stop", action="append", help="stop string (repeatable); the output ends before it")
    gen.add_argument("--stream", action="store_true", help="print tokens as they are committed")
    gen.add_argument(
        "--json", action="store_true", help='print one JSON object {"text", "token_ids", "metrics"}'
    )
    add_model_options(gen)
    add_sampling_options(gen)
    add_method_options(gen)
    gen.set_defaults(func=cmd_generate)

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
        default=["ar", "sd", "pearl", "specbranch"],
        metavar="SPEC",
        help="methods to compare: ar, hf-assisted, sd, pearl, specbranch, or a variant with option "
        "overrides such as specbranch:k_max=1,epsilon=0.3, ar:threads=1 or "
        "sd:draft_policy=svip,threshold=0.5 (default: ar sd pearl specbranch)",
    )
    add_prompt_options(bench, "humaneval", 10, "")
    bench.add_argument("--repeats", type=int, default=1, help="timed runs per prompt and method (default 1)")
    bench.add_argument(
        "--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens (fixed length)"
    )
    bench.add_argument("--out", default="bench-results", help="output folder (default bench-results)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_options(bench)
    add_sampling_options(bench)
    add_speculative_options(bench.add_argument_group("method defaults (override per method in --methods)"))
    bench.set_defaults(func=cmd_bench)

    serve = sub.add_parser(
        "serve",
        help="OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, streaming)",
        description="Serve the model pair behind OpenAI's API: GET /v1/models, POST /v1/completions, "
        "POST /v1/chat/completions (chat template), GET /health, GET /metrics. Requests are decoded one "
        "at a time in arrival order; --max-queue more may wait, beyond that the server answers 503.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--served-model-name",
        help="the model id clients send (default: specbranch/PAIR, or the --target path)",
    )
    serve.add_argument(
        "--max-queue", type=int, default=32, help="requests that may wait while one runs (default 32)"
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=300.0,
        help="seconds from arrival after which a request is abandoned with 504 (default 300)",
    )
    serve.add_argument(
        "--default-max-tokens",
        type=int,
        default=256,
        help="max_tokens of chat requests that give none (completions default to 16, as OpenAI's)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    add_model_options(serve)
    add_method_options(serve)
    serve.set_defaults(func=cmd_serve)

    hrad = sub.add_parser(
        "hrad",
        help="H-RAD predictor: collect training data, train",
        description="H-RAD decides after each SpecBranch verification how much of the surviving branch to "
        "keep. `collect` runs SpecBranch on prompts and stores (target features, label) samples; `train` "
        "fits the predictor; use it with `--hrad PREDICTOR`.",
    )
    hrad_sub = hrad.add_subparsers(dest="hrad_command", required=True)
    hc = hrad_sub.add_parser(
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
    hc.add_argument("--k-max", type=int, help="most branches at a branch point (default 4)")
    hc.add_argument("--max-draft-len", type=int, help="branch length (default: the measured cost ratio)")
    hc.add_argument("--inline", action="store_true", help="run the draft in this process (no worker)")
    hc.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_options(hc)
    add_sampling_options(hc)
    hc.set_defaults(func=cmd_hrad_collect)
    ht = hrad_sub.add_parser(
        "train",
        help="train the H-RAD predictor on collected samples",
        description="Train the 3-class MLP (3 layers, ReLU, dropout) on the samples of DATA files, with a "
        "stratified train/validation split and class-balanced loss; print validation accuracy and the "
        "confusion matrix; save the predictor with its metadata (model pair, K, sizes, classes, data).",
    )
    ht.add_argument("data", nargs="+", help="data files from `specbranch hrad collect` (same model pair)")
    ht.add_argument("--out", required=True, help="predictor file to write")
    ht.add_argument(
        "--hidden", type=int, nargs=2, default=[64, 32], metavar=("H1", "H2"),
        help="hidden widths (default 64 32)",
    )
    ht.add_argument(
        "--dropout", type=float, default=0.2, help="dropout after each hidden layer (default 0.2)"
    )
    ht.add_argument("--epochs", type=int, default=60, help="passes over the training split (default 60)")
    ht.add_argument("--batch-size", type=int, default=64, help="minibatch size (default 64)")
    ht.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    ht.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (default 0.01)")
    ht.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of each class held out (default 0.2)"
    )
    ht.add_argument("--seed", type=int, default=0, help="split and initialisation seed (default 0)")
    ht.add_argument(
        "--modes", nargs="+", choices=["greedy", "sampled"], default=["greedy", "sampled"],
        help="decoding modes the predictor acts in; in the others H-RAD stays off as with --hrad none "
        "(default: both). Restrict it where the benchmark shows H-RAD does not pay in a mode",
    )
    ht.set_defaults(func=cmd_hrad_train)

    models = sub.add_parser("models", help="list built-in models and pairs and whether they are installed")
    models.set_defaults(func=cmd_models)
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


if __name__ == "__main__":
    sys.exit(main())
