"""The draft side of the parallel methods (PEARL and SpecBranch): it proposes branches.

Terms (ALGORITHM.md): X = committed tokens, U = pending tokens (drafted, not yet verified),
b = the branch point right after X + U. Each round the draft receives a `Decision` (what the
target committed last round and which tokens stay pending) and answers with a `BranchProposal`
(the messages: `specbranch.transport.messages`):

  1. apply the decision: keep the KV of the surviving branch (only its new positions move),
     drop every other branch, so the draft cache holds X + U;
  2. q_b = draft distribution at b; k = max(1, floor(k_max * (1 - max q_b))) roots: the top-k
     tokens of q_b (deterministic drafting, verified with rule 3) or k i.i.d. samples from q_b
     (sampled drafting, rule 4). *Confidence* max q is read from the draft's own softmax
     (temperature 1, no truncation), so it is informative at temperature 0 too;
  3. extend all branches together, one batched tree forward per step (`KVSequence.grow`:
     the branches share the prefix KV), up to `max_len` tokens per branch, root included.
     A branch stops at EOS, or at its first position whose draft confidence max q < epsilon
     (that position is the natural next branch point; nothing is drafted there; the first
     `whole_branches` branches, which H-RAD may keep whole, are exempt), or where the
     draft-length policy, if the request names one, says stop (`specbranch.policies`; it also
     caps max_len, and learns from the verified/accepted counts each decision carries).

The draft never decides anything about acceptance: it only needs the target's decision.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from specbranch.backends.base import KVSequence
from specbranch.policies import DraftPolicy, RoundFeedback, build_policy
from specbranch.sampling import make_generator, process_logits, sample
from specbranch.transport.messages import BranchProposal, Decision, DraftRequest


@dataclass
class _Branch:
    """A branch in the draft's token tree: its tokens, their tree node ids, their q rows."""

    tokens: list[int]
    slots: list[int] = field(default_factory=list)  # the draft's node ids of the fed tokens
    rows: list[torch.Tensor] = field(default_factory=list)  # q rows of tokens[1:]
    confidences: list[float] = field(default_factory=list)  # draft confidence at tokens[1:]
    open: bool = True
    cut: bool = True  # stops at its first position with confidence below epsilon


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """The draft's confidence at each position: max of softmax(logits); [..., V] -> [...]."""
    return logits.float().softmax(-1).amax(-1)


class BranchDrafter:
    """Runs the draft model for one request at a time; see the module docstring."""

    def __init__(self, kv: KVSequence, eos_ids: frozenset[int]) -> None:
        self.kv = kv
        self.eos_ids = eos_ids
        self.policy: DraftPolicy | None = None
        self.policy_key: tuple | None = None

    def start(self, request: DraftRequest) -> None:
        """Reset for a new request (the first decision commits the prompt).

        The draft-length policy is kept (and keeps learning) while requests ask for the same one.
        """
        self.kv.reset()
        self.request = request
        key = (request.policy, request.policy_gamma, request.policy_cap)
        if key != self.policy_key:
            self.policy_key = key
            self.policy = None if request.policy is None else build_policy(*key)
        self.round_started: float | None = None
        self.generator = make_generator(request.seed, "draft")
        self.committed: list[int] = []  # X
        self.known: list[int] = []  # X + U
        self.branches: list[_Branch] = []

    def round(self, decision: Decision) -> BranchProposal:
        """Apply the decision, then draft branches from the new branch point."""
        max_len = decision.max_len
        if self.policy is not None:
            now = time.perf_counter()
            if self.round_started is not None:
                seconds = now - self.round_started
                self.policy.observe(
                    RoundFeedback(decision.verified, decision.accepted, len(decision.commit), seconds)
                )
            self.round_started = now
            max_len = min(max_len, self.policy.max_length())
        q_pending = self._apply(decision)
        logits = self.kv.logits_for(self.known, 1)[0]  # [V]
        q_b = process_logits(logits, self.request.sampling)  # [V]
        self.branches = [_Branch([root]) for root in self._roots(logits, q_b)]
        self._extend(max_len)
        return BranchProposal(
            branches=[b.tokens for b in self.branches],
            confidences=[b.confidences for b in self.branches],
            q_pending=q_pending,
            q_b=q_b if self.request.sampled else None,
            busy_seconds=self.kv.busy_seconds,
            forwards=self.kv.forwards,
        )

    def _apply(self, decision: Decision) -> torch.Tensor | None:
        """Update X + U and the cache; return the q rows of the new pending tokens."""
        vocab = self.kv.vocab_size
        rows = torch.zeros(0, vocab) if self.request.sampled else None
        if decision.branch >= 0:
            branch = self.branches[decision.branch]
            kept = len(decision.pending)
            if branch.tokens[1 : 1 + kept] != decision.pending:
                raise ValueError("pending tokens do not continue the chosen branch")
            self.kv.keep(branch.slots[: 1 + kept])  # root and kept tokens that already have KV
            if self.request.sampled and kept:
                rows = torch.stack(branch.rows[:kept])  # [kept, V]
        else:
            self.kv.crop(len(self.kv.tokens))  # drop every branch
        self.committed.extend(decision.commit)
        self.known = self.committed + decision.pending
        self.branches = []
        return rows

    def _roots(self, logits: torch.Tensor, q_b: torch.Tensor) -> list[int]:
        """k roots at the branch point: top-k (deterministic) or k i.i.d. samples from q_b."""
        k = max(1, math.floor(self.request.k_max * (1.0 - float(confidence(logits)))))
        k = min(k, logits.shape[-1])  # no more roots than there are tokens
        if self.request.sampled:
            return [sample(q_b, self.generator) for _ in range(k)]
        return torch.topk(logits, k).indices.tolist()

    def _extend(self, max_len: int) -> None:
        """Grow all open branches one token per batched tree forward, up to max_len tokens."""
        for i, branch in enumerate(self.branches):
            branch.open = max_len > 1 and branch.tokens[0] not in self.eos_ids
            branch.cut = i >= self.request.whole_branches
        while any(b.open for b in self.branches):
            active = [b for b in self.branches if b.open]
            first = len(self.kv.parents)  # the node id of the first token fed now
            parents = [b.slots[-1] if b.slots else -1 for b in active]  # a root hangs off U's end
            logits = self.kv.grow([b.tokens[-1] for b in active], parents)  # [m, V]
            q = process_logits(logits, self.request.sampling)  # [m, V]
            raw = logits.float().softmax(-1)  # [m, V] the draft's own distribution (see confidence)
            conf = raw.amax(-1).tolist()  # [m]
            sure = [c >= self.request.epsilon or not b.cut for c, b in zip(conf, active, strict=True)]
            if self.policy is not None:
                sure = [s and k for s, k in zip(sure, self.policy.keep(raw), strict=True)]
            for i, branch in enumerate(active):
                branch.slots.append(first + i)
                if not sure[i]:
                    branch.open = False
                    continue
                token = sample(q[i], self.generator) if self.request.sampled else int(q[i].argmax())
                branch.tokens.append(token)
                branch.rows.append(q[i])
                branch.confidences.append(conf[i])
                branch.open = len(branch.tokens) < max_len and token not in self.eos_ids
