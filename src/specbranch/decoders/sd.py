"""Classic speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

One round, serially:
  1. draft gamma tokens with the draft model, one forward each (x ~ q, or argmax q);
  2. one target forward over [last committed token, x_1..x_gamma] -> p_1..p_{gamma+1};
  3. verify: rule 1 for sampled drafts, rule 2 for greedy drafts -> accepted n, next token t;
  4. commit x_1..x_n, t. Both KV caches roll back to the committed prefix on the next call
     (`CachedModel.logits_for` crops to the common prefix).
"""

from __future__ import annotations

import torch

from specbranch.config import SamplingParams, SpeculativeConfig
from specbranch.metrics import RoundStats
from specbranch.runner import CachedModel
from specbranch.sampling import make_generator, process_logits, sample
from specbranch.verify import verify_deterministic_block, verify_sampled_block


class SpeculativeDecoder:
    """Draft-then-verify with a fixed draft length gamma.

    max_length: the context window; drafting stops early so no position exceeds it.
    eos_ids: drafting stops after an EOS token (nothing after it can be kept).
    """

    def __init__(
        self,
        target: CachedModel,
        draft: CachedModel,
        spec: SpeculativeConfig,
        max_length: int,
        eos_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.target, self.draft = target, draft
        self.spec, self.max_length, self.eos_ids = spec, max_length, eos_ids

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        self.target.reset()
        self.draft.reset()
        self.sampling = sampling
        self.verify_gen = make_generator(seed, "verify")
        self.draft_gen = make_generator(seed, "draft")

    def step(self, seq: list[int], budget: int) -> RoundStats:
        # The target emits one token beyond the drafts, and no position may pass the window.
        gamma = max(0, min(self.spec.gamma, budget - 1, self.max_length - len(seq) - 1))
        tokens: list[int] = []
        q_rows: list[torch.Tensor] = []
        for _ in range(gamma):
            q = process_logits(self.draft.logits_for(seq + tokens, 1)[0], self.sampling)  # [V]
            x = sample(q, self.draft_gen) if self.spec.draft_sampling == "sample" else int(q.argmax())
            tokens.append(x)
            q_rows.append(q)
            if x in self.eos_ids:
                break
        p = process_logits(self.target.logits_for(seq + tokens, len(tokens) + 1), self.sampling)  # [n+1, V]
        if self.spec.draft_sampling == "sample" and tokens:
            accepted, nxt = verify_sampled_block(p, torch.stack(q_rows), tokens, self.verify_gen)
        else:
            accepted, nxt = verify_deterministic_block(p, tokens, self.verify_gen)
        return RoundStats(
            committed=tokens[:accepted] + [nxt],
            drafted=len(tokens),
            verified=len(tokens),
            accepted=accepted,
            drafted_total=len(tokens),
        )

    def busy_seconds(self) -> tuple[float, float]:
        return self.target.busy_seconds, self.draft.busy_seconds

    def forwards(self) -> tuple[int, int]:
        return self.target.forwards, self.draft.forwards

    def close(self) -> None:
        pass
