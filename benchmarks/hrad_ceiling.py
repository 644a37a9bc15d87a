"""How much could H-RAD gain on a model pair? SpecBranch with keepers that know the answer.

At greedy the target's output is known in advance: it is the AR output. So an *oracle* keeper
can tell, after each branch hit, how many tokens of the surviving branch the next round will
accept (a), which no real predictor can. It bounds what any H-RAD predictor could do:

- `none`: no H-RAD (the draft cuts branches at its confidence epsilon);
- `3class`: a perfect 3-class predictor: keep nothing if a = 0, everything if the whole
  branch will be accepted, else the confident prefix (class 1);
- `exact`: keep exactly the a tokens that will be accepted (beyond any 3-class predictor).

Every keeper runs with the same branch length (--max-draft-len, so the measured cost ratio
does not vary between runs) on the same prompts, two processes as in normal use, first branch
drafted whole as with a real predictor. Compare in float32 (`--dtype float32`): a bf16 target
is not batch-invariant, so speculative output can leave AR's at numeric near-ties, after which
the oracle's reference is wrong; the "= AR" column shows it.

    python benchmarks/hrad_ceiling.py --dtype float32 --num-prompts 4 --max-new-tokens 96
"""

from __future__ import annotations

import argparse

from specbranch import load_pair
from specbranch.config import GenerationConfig, ParallelConfig, SpeculativeConfig
from specbranch.datasets import load_dataset
from specbranch.decoders.parallel import ParallelDecoder
from specbranch.engine import Engine, encode_prompt
from specbranch.hrad.classes import HradClass
from specbranch.hrad.keeper import keep_confident
from specbranch.runtime import build_parallel


class OracleKeeper:
    """Keeps as much of each surviving branch as `mode` says, knowing the target's output."""

    capture_layers = 0

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.reference: list[int] = []  # prompt + the target's greedy output
        self.decoder: ParallelDecoder | None = None

    def start(self, sampling: object) -> int:
        return 1

    def keep(self, target: object, root: int, confidences: list[float], epsilon: float) -> tuple[int, int]:
        assert self.decoder is not None
        branch = self.decoder.pending  # the surviving branch after its root
        at = len(self.decoder.target.tokens) + 1  # where branch[0] goes in the sequence
        truth = self.reference[at : at + len(branch)]
        accepted = 0
        while accepted < min(len(branch), len(truth)) and branch[accepted] == truth[accepted]:
            accepted += 1
        label = HradClass.of_verdict(len(branch), accepted)
        if self.mode == "exact":
            return accepted, label
        whole = {HradClass.BRANCH_NOW: 0, HradClass.KEEP_ALL: len(branch)}
        kept = whole.get(label, keep_confident(confidences, epsilon))
        return kept, label

    def observe(self, verified: int, accepted: int) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pair", default="qwen2.5-coder")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--dataset", nargs="+", default=["humaneval", "mt_bench"])
    parser.add_argument("--skip", type=int, default=20, help="prompts skipped per dataset (default 20)")
    parser.add_argument("--num-prompts", type=int, default=4, help="prompts per dataset (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-draft-len", type=int, default=10, help="branch length for all (default 10)")
    parser.add_argument("--modes", nargs="+", default=["none", "3class", "exact"])
    args = parser.parse_args()

    pair = load_pair(pair=args.pair, dtype=args.dtype)
    prompts = [
        p for name in args.dataset for p in load_dataset(name)[args.skip : args.skip + args.num_prompts]
    ]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, ignore_eos=True)
    references = []
    with Engine(pair, "ar") as ar:
        for prompt in prompts:
            ids = encode_prompt(pair, prompt.text)
            references.append((ids, ids + ar.generate(ids, config).token_ids))

    print("| keeper | tok/s | mean acc. len | rollback | = AR |\n|---|---|---|---|---|")
    options = ParallelConfig(max_draft_len=args.max_draft_len, hrad=None)
    for mode in args.modes:
        keeper = None if mode == "none" else OracleKeeper(mode)
        decoder = build_parallel(pair, "specbranch", SpeculativeConfig(), options, keeper=keeper)
        if keeper is not None:
            keeper.decoder, keeper.reference = decoder, references[0][1]
        tokens = seconds = forwards = drafted = dropped = same = 0
        with Engine.from_decoder(pair, "specbranch", decoder) as engine:
            engine.generate(references[0][0], GenerationConfig(max_new_tokens=8))  # warm-up
            for ids, reference in references:
                if keeper is not None:
                    keeper.reference = reference
                result = engine.generate(ids, config)
                m = result.metrics
                same += ids + result.token_ids == reference
                tokens, seconds = tokens + m.new_tokens, seconds + m.wall_seconds
                forwards += m.target_forwards
                drafted += m.drafted_tokens
                dropped += m.drafted_tokens - m.accepted_tokens
        print(
            f"| {mode} | {tokens / seconds:.2f} | {tokens / forwards:.2f} | {dropped / max(drafted, 1):.2f} "
            f"| {same}/{len(references)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
