"""Classic speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

One round, serially:
  0. (`--lookup`) prompt lookup's candidates (`decoders.lookup`) open the block when they are
     used: "on" always, "auto" while their acceptance rate in this request is at least the
     draft's (both learnt per request, `AcceptanceRate`; lookup's from every round, `matches`);
     they cost no draft forward, so at equal rates they are the cheaper proposal;
  1. draft up to the policy's length with the draft model, one forward each (x ~ q, or
     argmax q), after the lookup tokens; from the second token on, the draft-length policy may
     stop at a position where it expects a rejection (default policy `fixed`: always gamma);
  2. one target forward over [last committed token, x_1..x_n] -> p_1..p_{n+1};
  3. verify: rule 1 for sampled drafts, rule 2 for greedy drafts -> accepted a, next token t;
     a lookup token beside sampled drafts is rule 1 with q its point mass, which is rule 2;
  4. commit x_1..x_a, t; tell the policy and the gate how the round went. Both KV caches roll
     back to the committed prefix on the next call (`CachedModel.logits_for` crops to the
     common prefix).
"""

from __future__ import annotations

import time

import torch

from specbranch.config import SamplingParams, SpeculativeConfig
from specbranch.decoders.base import SerialDecoder
from specbranch.decoders.lookup import AcceptanceRate, lookup_candidates, matches
from specbranch.metrics import DRAFT, LOOKUP, RoundStats
from specbranch.policies import DraftPolicy, RoundFeedback
from specbranch.runner import CachedModel
from specbranch.sampling import process_logits, sample
from specbranch.verify import block_tests, verify_deterministic_block, verify_sampled_block


class SpeculativeDecoder(SerialDecoder):
    """Draft-then-verify; a draft-length policy decides how long to draft.

    max_length: the context window; drafting stops early so no position exceeds it.
    eos_ids: drafting stops after an EOS token (nothing after it can be kept).
    lookup: "off", "on" or "auto" (step 0).
    """

    def __init__(
        self,
        target: CachedModel,
        draft: CachedModel,
        spec: SpeculativeConfig,
        max_length: int,
        eos_ids: frozenset[int],
        policy: DraftPolicy,
        lookup: str = "off",
    ) -> None:
        self.target, self.draft, self.policy = target, draft, policy
        self.spec, self.max_length, self.eos_ids, self.lookup = spec, max_length, eos_ids, lookup

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        super().start(prompt_ids, sampling, seed)
        self.lookup_rate, self.draft_rate = AcceptanceRate(), AcceptanceRate()

    def step(self, seq: list[int], budget: int) -> RoundStats:
        start = time.perf_counter()
        # The target emits one token beyond the drafts, and no position may pass the window.
        room = max(0, min(budget - 1, self.max_length - len(seq) - 1))
        candidates = lookup_candidates(seq) if self.lookup != "off" else []
        tokens = self._fixed(candidates[:room])  # step 0
        fixed = len(tokens)
        q_rows: list[torch.Tensor] = []
        if not tokens or tokens[-1] not in self.eos_ids:
            self._draft(seq, tokens, q_rows, min(self.policy.max_length(), room) - fixed)
        p = process_logits(self.target.logits_for(seq + tokens, len(tokens) + 1), self.sampling)  # [n+1, V]
        sampled = self.sampled_drafts and bool(q_rows)
        if sampled:
            rows = [one_hot(x, p) for x in tokens[:fixed]] + q_rows  # [n, V]
            accepted, nxt = verify_sampled_block(p, torch.stack(rows), tokens, self.verify_gen)
        else:
            accepted, nxt = verify_deterministic_block(p, tokens, self.verify_gen)
        tests = block_tests(accepted, len(tokens), sampled, point_masses=fixed)
        stats = RoundStats.block(tokens, accepted, nxt, [LOOKUP] * fixed + [DRAFT] * len(q_rows), tests)
        # The draft's tokens were tested only if the lookup tokens before them were accepted.
        drafted, beyond = len(q_rows), max(0, accepted - fixed)
        self.draft_rate.learn(min(drafted, beyond + 1) if accepted >= fixed else 0, beyond)
        self.lookup_rate.learn(*matches(candidates, stats.committed))
        self.policy.observe(RoundFeedback(drafted, beyond, accepted + 1, time.perf_counter() - start))
        return stats

    @property
    def sampled_drafts(self) -> bool:
        return self.spec.draft_sampling == "sample"

    def _fixed(self, candidates: list[int]) -> list[int]:
        """The lookup candidates the round verifies (step 0), up to the first EOS."""
        use = self.lookup == "on" or (self.lookup == "auto" and self.lookup_rate.rate >= self.draft_rate.rate)
        if not use:
            return []
        ends = [i for i, t in enumerate(candidates) if t in self.eos_ids]
        return candidates[: ends[0] + 1] if ends else list(candidates)

    def _draft(self, seq: list[int], tokens: list[int], q_rows: list, gamma: int) -> None:
        """Step 1: append up to gamma draft tokens (and the distributions they were drawn from)."""
        for i in range(gamma):
            logits = self.draft.logits_for(seq + tokens, 1)  # [1, V]
            if i > 0 and not self.policy.keep(logits.float().softmax(-1))[0]:
                break
            q = process_logits(logits[0], self.sampling)  # [V]
            x = sample(q, self.draft_gen) if self.sampled_drafts else int(q.argmax())
            tokens.append(x)
            q_rows.append(q)
            if x in self.eos_ids:
                break


def one_hot(token: int, like: torch.Tensor) -> torch.Tensor:
    """The point mass on `token` (dtype, device and vocabulary of `like`'s rows): the
    distribution a deterministic candidate was "drawn" from. Rule 1 with it accepts with
    probability p(token) and otherwise samples p without the token, renormalised: rule 2."""
    row = torch.zeros(like.shape[-1], dtype=like.dtype, device=like.device)
    row[token] = 1.0
    return row
