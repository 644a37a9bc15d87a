"""The target side of the parallel methods: one round of branch-parallel speculative decoding.

PEARL and SpecBranch share this loop; they differ only in their `BranchPolicy` (how many
branches, when a branch stops, how long to draft). One round (ALGORITHM.md, "SpecBranch"):

  1. send the draft the previous round's decision (committed tokens, the new pending U);
  2. target forward over U and the branch point b      } at the same time, in two processes
     draft: branches from b (`BranchDrafter.round`)     } (or one after the other, inline);
  3. receive the draft's proposal (roots, branches, and q rows when drafting is sampled);
  4. decide, here and only here (`specbranch.verify.decide_round`): rule 1/2 over U; on the
     first rejection commit the verified part plus the correction and drop every branch; if
     all of U passes, rule 3/4 at b: on a hit commit U plus the root and the rest of that
     branch becomes the next U, on a miss commit U plus the target's token and the next U is
     empty;
  5. with H-RAD (a `BranchKeeper`), after a hit: how much of that branch becomes the next U,
     decided on the target features of this very verification (`specbranch.hrad`). When the
     keeper may keep more than the confident prefix, the draft drafts its first branch (the
     likeliest root's) whole, past its confidence cut, and the keeper applies the cut; the
     other branches stay cut, so the draft's round costs about what it costs without H-RAD.

The draft is reached through a `DraftLink` (`specbranch.transport`). The KV caches roll back
implicitly: the target's via `KVSequence.logits_for` (crop to the common prefix), the draft's
when it applies the next decision. The link serves one request at a time: the request's state
(`ParallelRequest`) lives apart from the decoder, but a second request starts only after the
first has ended. The round's statistics are filled from its verdict, in one
place (`_stats`).

A round that fails leaves nothing stale: between step 1 and step 3 the draft's reply is
drained (`DraftLink.drain`) before the error propagates, and a link that cannot be kept in
step closes itself (`alive()` False, its owner rebuilds it). Outside that window the link is
in step, between rounds included (a caller that stops asking for rounds leaves no reply
behind), and the next `start` resets both sides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from specbranch.backends.base import Backend, KVSequence
from specbranch.config import SamplingParams
from specbranch.decoders.base import Request
from specbranch.metrics import BRANCH, DRAFT, TARGET, GenerationMetrics, RoundStats
from specbranch.sampling import process_logits
from specbranch.transport.messages import BranchProposal, Decision, DraftLink, DraftRequest
from specbranch.verify import Verdict, decide_round


class BranchPolicy(Protocol):
    """How a method drafts: branches per branch point, confidence cut-off, branch length.

    Uses only information from before verification, so it changes speed, never the output.
    """

    k_max: int
    epsilon: float
    base_length: int  # the configured or measured branch length (PEARL: the initial block)

    def reset(self) -> None:
        """Start of a request."""

    def draft_length(self) -> int:
        """Longest branch (root included) to draft this round."""

    def update(self, fully_accepted: bool) -> None:
        """Learn from the round just decided (every drafted token on the path accepted or not)."""


class BranchKeeper(Protocol):
    """H-RAD: after a branch hit, how much of the surviving branch to keep as the next U.

    capture_layers: K, the target layers whose hidden states the decision needs (read after
        `start`: 0 where the keeper makes no decision for the request, so nothing is captured).
    """

    capture_layers: int

    def start(self, sampling: SamplingParams) -> int:
        """A new request; how many branches (likeliest root first) the draft must draft whole,
        past its confidence cut, because the keeper may keep them whole (0: none)."""

    def keep(
        self, target: KVSequence, root: int, confidences: list[float], epsilon: float
    ) -> tuple[int, int]:
        """(branch tokens after the root to keep, predicted class or -1), from the target's last forward."""

    def observe(self, verified: int, accepted: int) -> None:
        """The next round's verdict on the block that was kept (verified and accepted tokens of U)."""


class _Cut(NamedTuple):
    """What the keeper did to the surviving branch after a hit (defaults: nothing)."""

    dropped: int = 0  # branch tokens it cut off (drafted on the chosen path, then rolled back)
    hrad_class: int = -1  # its predicted class (-1: no decision)
    seconds: float = 0.0  # how long it took


@dataclass
class ParallelRequest(Request):
    """A request's state between parallel rounds: U (`pending`), which branch of the last
    proposal it continues (`branch`, -1: none), how many committed tokens the draft has been
    told (`told`), the last round's (verified, accepted) for the draft's policy, whether the
    keeper chose U, and the draft side's running busy time and forwards."""

    pending: list[int] = field(default_factory=list)
    branch: int = -1
    told: int = 0
    last: tuple[int, int] = (0, 0)
    kept_by_keeper: bool = False
    draft_busy: float = 0.0
    draft_forwards: int = 0


class ParallelDecoder:
    """Branch-parallel speculative decoding, target side (verification happens here).

    draft_sampling: "sample" drafts x ~ q (rules 1 and 4, q rows cross over) or "greedy"
    drafts argmax/top-k (rules 2 and 3, only token ids cross over). At temperature 0 the
    deterministic rules are always used. draft_policy: (spec, gamma, cap) of a draft-length
    policy run on the draft side under the method's own cap (spec None: none). cost_ratio: the
    measured cost ratio c (reported; 0 when not measured). keeper: H-RAD (None: keep the whole
    surviving branch, which the draft already cut at its confidence epsilon).
    Its rounds do not split in plan and settle (the draft side runs in step), and the branch
    policy and the draft side hold one request at a time: requests run one after the other.
    """

    plans_rounds = False

    def __init__(
        self,
        target: Backend,
        link: DraftLink,
        policy: BranchPolicy,
        draft_sampling: str,
        draft_policy: tuple[str | None, int, int],
        cost_ratio: float = 0.0,
        keeper: BranchKeeper | None = None,
    ) -> None:
        self.target, self.link, self.policy, self.cost_ratio = target, link, policy, cost_ratio
        self.draft_sampling, self.draft_policy = draft_sampling, draft_policy
        self.keeper = keeper

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> ParallelRequest:
        request = ParallelRequest(prompt_ids, sampling, seed, KVSequence(self.target))
        self.policy.reset()
        sampled = self.sampled(request)
        whole = self.keeper.start(sampling) if self.keeper is not None else 0
        request.target.capture_layers = self.keeper.capture_layers if self.keeper is not None else 0
        policy = self.policy
        draft = DraftRequest(prompt_ids, sampling, seed, sampled, policy.k_max, policy.epsilon, whole)
        draft.policy, draft.policy_gamma, draft.policy_cap = self.draft_policy
        self.link.start(draft)
        return request

    def sampled(self, request: Request) -> bool:
        """Whether the request's drafts are sampled (rules 1 and 4) rather than deterministic."""
        return self.draft_sampling == "sample" and not request.sampling.greedy

    def step(self, request: ParallelRequest, budget: int) -> RoundStats:
        """One round, steps 1-5 of the module docstring."""
        pending, seq = request.pending, request.seq
        # Branch tokens past the budget could never be committed.
        max_len = max(1, min(self.policy.draft_length(), budget - len(pending)))
        self.link.send(Decision(seq[request.told :], pending, request.branch, max_len, *request.last))
        request.told = len(seq)
        try:
            logits = request.target.logits_for(seq + pending, len(pending) + 1)
            p = process_logits(logits, request.sampling)  # [|U|+1, V]
        except BaseException:
            # The draft answers this decision whatever happens here. Left unread, its proposal
            # puts the link out of step for the next request (a stale first proposal; over gloo,
            # a send that blocks until the worker counts as hung): drop it, or close the link.
            self.link.drain()
            raise
        proposal = self.link.receive()
        request.draft_busy, request.draft_forwards = proposal.busy_seconds, proposal.forwards
        verdict = decide_round(p, pending, proposal, self.sampled(request), request.verify_gen)
        if request.kept_by_keeper:  # the keeper learns how the U it chose fared
            self.keeper.observe(len(pending), verdict.pending_accepted)
        origins = _origins(verdict, request.branch)
        cut = self._next_pending(request, verdict, proposal)
        self.policy.update(verdict.hit is not None)
        request.last = (verdict.verified, verdict.accepted)
        request.seq.extend(verdict.committed)
        return self._stats(verdict, origins, pending, proposal, cut)

    def _next_pending(self, request: ParallelRequest, verdict: Verdict, proposal: BranchProposal) -> _Cut:
        """Set the next U: after a hit the rest of that branch, cut by the keeper if there is one."""
        request.kept_by_keeper = False
        if verdict.hit is None:
            request.pending, request.branch = [], -1
            return _Cut()
        request.pending, request.branch = proposal.branches[verdict.hit][1:], verdict.hit
        if self.keeper is None or not request.pending:
            return _Cut()
        start = time.perf_counter()
        root, confidences = verdict.committed[-1], proposal.confidences[verdict.hit]
        kept, hrad_class = self.keeper.keep(request.target, root, confidences, self.policy.epsilon)
        dropped = len(request.pending) - kept
        request.pending = request.pending[:kept]
        request.kept_by_keeper = True
        return _Cut(dropped, hrad_class, time.perf_counter() - start)

    @staticmethod
    def _stats(
        verdict: Verdict, origins: list[str], pending: list[int], proposal: BranchProposal, cut: _Cut
    ) -> RoundStats:
        """The round's statistics, all filled here from its verdict (and the keeper's cut).

        drafted counts the chosen path: U, then on a hit only the root (the rest of its branch
        counts once verified, or now where the keeper cut it off: a rollback), otherwise the
        first branch, lost with the round.
        """
        path = 1 + cut.dropped if verdict.hit is not None else len(proposal.branches[0])
        return RoundStats(
            committed=verdict.committed,
            origins=origins,
            drafted=len(pending) + path,
            verified=verdict.verified,
            accepted=verdict.accepted,
            drafted_total=sum(len(b) for b in proposal.branches),
            branched=verdict.branched,
            branch_hit=verdict.hit is not None,
            hrad_class=cut.hrad_class,
            hrad_seconds=cut.seconds,
            tests=verdict.tests,
        )

    def report(self, request: ParallelRequest, metrics: GenerationMetrics) -> None:
        metrics.backend = request.target.backend.name
        metrics.target_busy_seconds = request.target.busy_seconds
        metrics.draft_busy_seconds = request.draft_busy
        metrics.draft_forwards = request.draft_forwards
        metrics.cost_ratio, metrics.draft_length = self.cost_ratio, self.policy.base_length
        metrics.execution = "parallel"

    def alive(self) -> bool:
        return self.link.alive()

    def worker_pid(self) -> int | None:
        return self.link.worker_pid()

    def close(self) -> None:
        self.link.close()


def _origins(verdict: Verdict, branch: int) -> list[str]:
    """Where the round's committed tokens came from: U's accepted tokens from the branch U
    continues (`branch`; 0 or -1: the likeliest line), then the accepted root (branch `hit`) or
    the target's recovered token. Roots are ranked top-k when deterministic; sampled roots are
    i.i.d. draws, the first counting as the likeliest line."""
    line = lambda b: BRANCH if b > 0 else DRAFT  # noqa: E731
    last = TARGET if verdict.hit is None else line(verdict.hit)
    return [line(branch)] * verdict.pending_accepted + [last]
