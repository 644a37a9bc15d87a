"""Classic speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

One round, serially:
  1. draft up to the policy's length with the draft model, one forward each (x ~ q, or
     argmax q); from the second token on, the draft-length policy may stop at a position
     where it expects a rejection (default policy `fixed`: always gamma tokens);
  2. one target forward over [last committed token, x_1..x_n] -> p_1..p_{n+1};
  3. verify: rule 1 for sampled drafts, rule 2 for greedy drafts -> accepted a, next token t;
  4. commit x_1..x_a, t; tell the policy how the round went. Both KV caches roll back to the
     committed prefix on the next call (`CachedModel.logits_for` crops to the common prefix).
"""

from __future__ import annotations

import time

import torch

from specbranch.config import SpeculativeConfig
from specbranch.decoders.base import SerialDecoder
from specbranch.metrics import RoundStats
from specbranch.policies import DraftPolicy, RoundFeedback
from specbranch.runner import CachedModel
from specbranch.sampling import process_logits, sample
from specbranch.verify import verify_deterministic_block, verify_sampled_block


class SpeculativeDecoder(SerialDecoder):
    """Draft-then-verify; a draft-length policy decides how long to draft.

    max_length: the context window; drafting stops early so no position exceeds it.
    eos_ids: drafting stops after an EOS token (nothing after it can be kept).
    """

    def __init__(
        self,
        target: CachedModel,
        draft: CachedModel,
        spec: SpeculativeConfig,
        max_length: int,
        eos_ids: frozenset[int],
        policy: DraftPolicy,
    ) -> None:
        self.target, self.draft, self.policy = target, draft, policy
        self.spec, self.max_length, self.eos_ids = spec, max_length, eos_ids

    def step(self, seq: list[int], budget: int) -> RoundStats:
        start = time.perf_counter()
        # The target emits one token beyond the drafts, and no position may pass the window.
        gamma = max(0, min(self.policy.max_length(), budget - 1, self.max_length - len(seq) - 1))
        tokens: list[int] = []
        q_rows: list[torch.Tensor] = []
        for i in range(gamma):
            logits = self.draft.logits_for(seq + tokens, 1)  # [1, V]
            if i > 0 and not self.policy.keep(logits.float().softmax(-1))[0]:
                break
            q = process_logits(logits[0], self.sampling)  # [V]
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
        self.policy.observe(RoundFeedback(len(tokens), accepted, accepted + 1, time.perf_counter() - start))
        return RoundStats.block(tokens, accepted, nxt)
