"""Batched forwards and batched rounds on the built-in pair, timed without a server.

    python scripts/batch_timing.py forwards            # target and draft forwards over 1-8 sequences
    python scripts/batch_timing.py rounds 4 specbranch lookup=off   # 4 requests decoded together
    python scripts/batch_timing.py rounds 4 specbranch tree_nodes=8  # trees of at most 8 nodes
    python scripts/batch_timing.py rounds 8 ar --datasets humaneval mt_bench code_edit --max-tokens 128

`forwards`: each model's forward over 1, 2, 4 and 8 sequences (after a 200-token prompt each)
feeding 1 or 4 tree tokens per sequence, the best of 3 after a warm-up, in ms.
`rounds N METHOD [OPTION=VALUE ...]`: the first N prompts of --datasets (chat template;
several datasets interleaved as bench-serve does) decoded together by `engine.run_rounds` to
--max-tokens greedy tokens each (64; EOS ignored), or one after another with `--alone` (as the
one-at-a-time server); the first (prefill) rounds' seconds, tokens/s after them, all tokens over
all seconds, and per request the target's and the draft's busy seconds and forwards and the
controller's rounds.
Run with nothing else computing (`--backend` as in the CLI: default torch here). `--thread` runs
the timed work in a thread other than the main one, as the server's decode loop does (the models
still load in the main thread).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from specbranch.backends.base import Feed, KVSequence
from specbranch.cli.bench_serve import interleave
from specbranch.config import GenerationConfig, SamplingParams
from specbranch.datasets import load_dataset
from specbranch.engine import Engine, run_rounds
from specbranch.models import ModelPair
from specbranch.models.pair import load_pair
from specbranch.runtime.backends import pair_backends
from specbranch.server.scheduler import off_main_thread

PROMPT = list(range(100, 300))  # the cached context of `forwards`


def forwards(pair: ModelPair) -> None:
    target, draft = pair_backends(pair)
    for model, name in ((target, "target"), (draft, "draft")):
        seqs = [KVSequence(model) for _ in range(8)]
        for seq in seqs:
            model.forward([Feed(seq, PROMPT, rows=1)])
        for n in (1, 2, 4, 8):
            for width in (1, 4):
                times = []
                for _ in range(4):
                    chain = list(range(5, 5 + width)), [-1, *range(width - 1)]  # tokens, parents
                    feeds = [Feed(s, [], *chain, rows=width) for s in seqs[:n]]
                    start = time.perf_counter()
                    model.forward(feeds)
                    times.append(time.perf_counter() - start)
                    for seq in seqs[:n]:
                        seq.crop(len(PROMPT))
                print(f"{name}: {n} sequences x {width} tokens: {1000 * min(times[1:]):.1f} ms")


def rounds(
    pair: ModelPair, n: int, method: str, options: dict[str, str | int], datasets: list[str], tokens: int,
    alone: bool = False,
) -> None:
    engine = Engine(pair, method, **options)
    config = GenerationConfig(tokens, SamplingParams(0.0), 0, ignore_eos=True)
    prompts = interleave([p for name in datasets for p in load_dataset(name, n)])[:n]
    generations = [engine.begin(p.text, config, chat=True) for p in prompts]
    start = time.perf_counter()
    batches = [[g] for g in generations] if alone else [generations]  # one at a time, or together
    prefill = decode = 0.0
    made = count = 0
    for batch in batches:
        begun = time.perf_counter()
        run_rounds(batch)  # the prompts' prefill
        prefill += time.perf_counter() - begun
        begun, first = time.perf_counter(), sum(len(g.new) for g in batch)
        while not all(g.done for g in batch):
            run_rounds([g for g in batch if not g.done])
            count += 1
        decode += time.perf_counter() - begun
        made += sum(len(g.new) for g in batch) - first
    total = sum(len(g.new) for g in generations) / (time.perf_counter() - start)
    how = "one at a time" if alone else "together"
    print(f"{n} x {method} {how}: prefill rounds {prefill:.2f} s; then {made} tokens in {count} rounds, "
          f"{made / decode:.2f} tok/s; all tokens over all seconds {total:.2f} tok/s")
    for g in generations:
        r = g.request
        draft = f"draft {r.draft.busy_seconds:.2f} s / {r.draft.forwards}" if r.draft else "no draft"
        print(f"  target {r.target.busy_seconds:.2f} s / {r.target.forwards}, {draft}, "
              f"rounds {g.metrics.rounds_by_mode}")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("what", choices=["forwards", "rounds"])
    parser.add_argument("n", nargs="?", type=int, default=4, help="requests decoded together (rounds)")
    parser.add_argument("method", nargs="?", default="specbranch", help="method (rounds)")
    parser.add_argument("options", nargs="*", help="method options as OPTION=VALUE (rounds)")
    parser.add_argument("--backend", default="torch", choices=["torch", "llama.cpp"])
    parser.add_argument("--datasets", nargs="+", default=["humaneval"], help="prompt sets (rounds)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per request (rounds)")
    parser.add_argument("--alone", action="store_true", help="decode the N requests one at a time (rounds)")
    parser.add_argument("--thread", action="store_true", help="time the work in a thread other than the main")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pair = load_pair(backend=args.backend)
    if args.what == "forwards":
        work = partial(forwards, pair)
    else:
        options = {k: int(v) if v.isdigit() else v for k, v in (o.split("=", 1) for o in args.options)}
        work = partial(rounds, pair, args.n, args.method, options, args.datasets, args.max_tokens, args.alone)
    if args.thread:
        off_main_thread(work)  # as the server's decode loop: not on the thread that loaded the models
    else:
        work()


if __name__ == "__main__":
    main()
