"""Classic speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

One round, serially:
  0. (`--lookup`) a draft-free proposer's candidates (`decoders.proposer`; prompt lookup by
     default) open the block when they are used: "on" always, "auto" while their acceptance
     rate in this request is at least the draft's (both learnt per request, `AcceptanceRate`;
     lookup's from every round, `matches`); they cost no draft forward, so at equal rates they
     are the cheaper proposal;
  1. draft up to the policy's length with the draft model, one forward each (x ~ q, or
     argmax q), after the lookup tokens; from the second token on, the draft-length policy may
     stop at a position where it expects a rejection (default policy `fixed`: always gamma);
  2. one target forward over [last committed token, x_1..x_n] -> p_1..p_{n+1} (run by the
     caller: steps 0-1 are `plan`, 3-4 `settle`);
  3. verify: rule 1 for sampled drafts, rule 2 for greedy drafts -> accepted a, next token t;
     a lookup token beside sampled drafts is rule 1 with q its point mass, which is rule 2;
  4. commit x_1..x_a, t; tell the policy and the gate how the round went. Both KV caches roll
     back to the committed prefix on the next round (`KVSequence.sync` crops to the common
     prefix).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import torch

from specbranch.backends.base import Backend, Feed, KVSequence
from specbranch.config import SamplingParams, SpeculativeConfig
from specbranch.decoders.base import PlanClock, PlanSteps, Request, SerialDecoder, own_seconds, room
from specbranch.decoders.lookup import NUM_TOKENS, PROMPT_LOOKUP, matches
from specbranch.decoders.proposer import Proposer
from specbranch.estimators import AcceptanceRate
from specbranch.metrics import DRAFT, LOOKUP, RoundStats
from specbranch.policies import DraftPolicy, RoundFeedback
from specbranch.sampling import process_logits, sample
from specbranch.verify import block_tests, verify_deterministic_block, verify_sampled_block


@dataclass
class SDRequest(Request):
    """A request's state in SD: how often lookup's candidates and the draft's tokens have been
    accepted (per token, decaying)."""

    lookup_rate: AcceptanceRate = field(default_factory=AcceptanceRate)
    draft_rate: AcceptanceRate = field(default_factory=AcceptanceRate)


@dataclass
class SDProposal:
    """An SD round between plan and settle: the block (`fixed` lookup tokens, then drafts with
    their q rows on the target's device), the lookup candidates the gate learns from, the
    seconds planning took, and the target feed."""

    feed: Feed
    tokens: list[int]
    fixed: int
    q_rows: list[torch.Tensor]
    candidates: list[int]
    planned: float


class SpeculativeDecoder(SerialDecoder):
    """Draft-then-verify; a draft-length policy decides how long to draft.

    max_length: the context window; drafting stops early so no position exceeds it.
    eos_ids: drafting stops after an EOS token (nothing after it can be kept).
    lookup: "off", "on" or "auto" (step 0); proposer: where its candidates come from.
    """

    def __init__(
        self,
        target: Backend,
        draft: Backend,
        spec: SpeculativeConfig,
        max_length: int,
        eos_ids: frozenset[int],
        policy: DraftPolicy,
        lookup: str = "off",
        proposer: Proposer = PROMPT_LOOKUP,
    ) -> None:
        self.target, self.draft, self.policy, self.proposer = target, draft, policy, proposer
        self.spec, self.max_length, self.eos_ids, self.lookup = spec, max_length, eos_ids, lookup

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> SDRequest:
        return SDRequest(prompt_ids, sampling, seed, KVSequence(self.target), KVSequence(self.draft))

    @property
    def sampled_drafts(self) -> bool:
        return self.spec.draft_sampling == "sample"

    def plan(self, request: SDRequest, budget: int) -> PlanSteps:
        """Steps 0 and 1, and the target feed of step 2."""
        clock, seq = PlanClock(), request.seq
        n = room(request, budget, self.max_length)
        found = self.proposer.continuations(seq, NUM_TOKENS, 1) if self.lookup != "off" else []
        candidates = found[0] if found else []
        tokens = self._fixed(request, candidates[:n])  # step 0
        fixed = len(tokens)
        q_rows: list[torch.Tensor] = []
        if not tokens or tokens[-1] not in self.eos_ids:
            yield from self._draft(request, tokens, q_rows, min(self.policy.max_length(), n) - fixed, clock)
        feed = request.target.linear_feed(seq + tokens, len(tokens) + 1)
        q_rows = [row.to(request.target.device) for row in q_rows]  # verified beside p
        return SDProposal(feed, tokens, fixed, q_rows, candidates, clock.seconds())

    def settle(self, request: SDRequest, proposal: SDProposal, logits: torch.Tensor) -> RoundStats:
        """Steps 3 and 4."""
        settle_started = time.perf_counter()
        tokens, fixed, q_rows = proposal.tokens, proposal.fixed, proposal.q_rows
        p = process_logits(logits, request.sampling)  # [n+1, V]
        sampled = self.sampled_drafts and bool(q_rows)
        if sampled:
            rows = [one_hot(x, p) for x in tokens[:fixed]] + q_rows  # [n, V]
            accepted, nxt = verify_sampled_block(p, torch.stack(rows), tokens, request.verify_gen)
        else:
            accepted, nxt = verify_deterministic_block(p, tokens, request.verify_gen)
        tests = block_tests(accepted, len(tokens), sampled, point_masses=fixed)
        stats = RoundStats.block(tokens, accepted, nxt, [LOOKUP] * fixed + [DRAFT] * len(q_rows), tests)
        # The draft's tokens were tested only if the lookup tokens before them were accepted.
        drafted, beyond = len(q_rows), max(0, accepted - fixed)
        request.draft_rate.learn(min(drafted, beyond + 1) if accepted >= fixed else 0, beyond)
        request.lookup_rate.learn(*matches(proposal.candidates, stats.committed))
        elapsed = own_seconds(proposal.planned, request, settle_started)
        self.policy.observe(RoundFeedback(drafted, beyond, accepted + 1, elapsed))
        request.seq.extend(stats.committed)
        return stats

    def _fixed(self, request: SDRequest, candidates: list[int]) -> list[int]:
        """The lookup candidates the round verifies (step 0), up to the first EOS."""
        use = self.lookup == "on" or (
            self.lookup == "auto" and request.lookup_rate.rate >= request.draft_rate.rate
        )
        if not use:
            return []
        ends = [i for i, t in enumerate(candidates) if t in self.eos_ids]
        return candidates[: ends[0] + 1] if ends else list(candidates)

    def _draft(
        self, request: SDRequest, tokens: list[int], q_rows: list, gamma: int, clock: PlanClock
    ) -> Generator[Feed, torch.Tensor, None]:
        """Step 1: append up to gamma draft tokens (and the distributions they were drawn from),
        a draft forward each."""
        for i in range(gamma):
            logits = yield from clock.forward(request.draft.linear_feed(request.seq + tokens, 1))  # [1, V]
            if i > 0 and not self.policy.keep(logits.float().softmax(-1))[0]:
                break
            q = process_logits(logits[0], request.sampling)  # [V]
            x = sample(q, request.draft_gen) if self.sampled_drafts else int(q.argmax())
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
