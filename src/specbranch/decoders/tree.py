"""SpecBranch on one shared device: a draft token tree, verified by the target in one pass.

Where draft and target share a device, running them at the same time splits its compute; what
the device gives away almost for free is *width*: a target forward over 8-16 tokens costs about
what one over 2-4 costs. So the branches SpecBranch would draft in parallel become a token
tree that the target verifies in one forward (ALGORITHM.md, "Tree execution"). One round, its
state a `TreeRound` (`decoders/tree_round.py`):

plan (`plan`):
  0. (`--lookup`) open the tree with a draft-free proposer's continuations after the root
     (prompt lookup by default: a trie of up to 4 copies, up to N nodes, past D;
     `_lookup_trie`, `decoders/tree_lookup.py`), shown to the draft in the forward it needs
     anyway for the uncached committed tail: one forward gives the draft's distribution after
     the root and after every copied token, so copied tokens cost no draft step. Where the
     draft's top token is not the copy's, copying is likely to stop: the trie's nodes are
     valued by the draft's agreement and the acceptance seen in the request, and those that
     pay are kept (`_hang`);
  1. grow the tree on the draft, level by level, one batched draft forward per level (the
     first level is the forward of step 0, over the root and every lookup node; before each
     later one, lookup runs again below the level's likeliest new node and its trie rides in
     that forward): the draft proposes each frontier node's children and the throughput model
     keeps those that pay (`decoders/tree_draft.py`); the tree grows another level only while
     further levels would pay (`worth_a_level`). A node's expected acceptance is its path
     probability with each factor calibrated by the acceptance the walks observed so far in the
     request (`Calibration`), and at greedy decoding a round's seconds include its measured
     unmodelled time (`overhead`). Without cost curves the tree fills N nodes and D levels;
  2. the target feed: the uncached committed tail and every node, with each node attending to
     its ancestors (`KVSequence.tree_feed`), run by the caller: p after the root and each node;
settle (`settle`):
  3. walk the tree from the root (`verify.verify_tree`, rule 3, 4 or both): commit the accepted path
     and the recovered or bonus token after it;
  4. keep the accepted path's KV in both caches (`KVSequence.keep`) and drop the rest;
  5. learn from the walk: which tested nodes had a child accepted, by depth (`Calibration`,
     the acceptance-by-depth metrics), and how often lookup's tokens were accepted.

Everything the tree's shape depends on is known before verification, so the output is exactly
the target's (greedy: token for token; sampled: in distribution).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import replace

import torch

from specbranch.backends.base import Backend, Feed, KVSequence
from specbranch.config import SamplingParams
from specbranch.costs import Beside, CorrectedCurve, Share, best_prefix
from specbranch.decoders.base import PlanClock, PlanSteps, SerialDecoder, own_seconds, room
from specbranch.decoders.lookup import PROMPT_LOOKUP
from specbranch.decoders.proposer import Proposer
from specbranch.decoders.tree_control import DRAFT, PLAIN, RoundChoice, choose
from specbranch.decoders.tree_draft import propose, select, worth_a_level
from specbranch.decoders.tree_lookup import LOOKUP_BRANCHES, LookupTrie, build_trie, feed, score
from specbranch.decoders.tree_round import Candidate, TreeLimits, TreeRequest, TreeRound
from specbranch.metrics import TARGET, GenerationMetrics, RoundStats
from specbranch.policies import DraftPolicy, RoundFeedback
from specbranch.sampling import process_logits
from specbranch.verify import verify_tree

OVERHEAD_DECAY = 0.9  # weight of the past in the running mean of a round's unmodelled seconds
# At greedy decoding, a round after this many without a plain one is plain: only plain rounds
# time a one-token forward, and a probe whose T(1) read high (taken on a busy machine) would
# otherwise keep plain decoding looking dearer than it is for good.
EXPLORE_EVERY = 32


class TreeDecoder(SerialDecoder):
    """Draft a tree, verify it in one target forward; see the module docstring.

    draft_sampling: "sample" (children drawn without replacement, rule 4) or "greedy" (top-k,
    rule 3); at temperature 0 the deterministic rule is always used.
    policy: a draft-length policy (`--draft-policy`), or None. It shapes trees only with what is
    known before verification: its `max_length()` caps a round's depth, and a node below the
    root gets children only where its `keep()` accepts the draft's distribution there; it
    observes every round.
    lookup: "off", "on" or "auto" (step 0); proposer: where its candidates come from.
    """

    def __init__(
        self,
        target: Backend,
        draft: Backend,
        draft_sampling: str,
        limits: TreeLimits,
        max_length: int,
        eos_ids: frozenset[int],
        policy: DraftPolicy | None = None,
        lookup: str = "off",
        proposer: Proposer = PROMPT_LOOKUP,
    ) -> None:
        self.target, self.draft, self.limits, self.policy = target, draft, limits, policy
        self.draft_sampling, self.max_length, self.eos_ids = draft_sampling, max_length, eos_ids
        self.lookup, self.proposer = lookup, proposer
        # The curves as the forwards this decoder times correct them (greedy rounds only).
        curves = (limits.target, limits.draft)
        correct = limits.correct and None not in curves
        self.corrected = tuple(CorrectedCurve(c) for c in curves) if correct else None

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> TreeRequest:
        request = TreeRequest(prompt_ids, sampling, seed, KVSequence(self.target), KVSequence(self.draft))
        request.sampled = self.draft_sampling == "sample" and not sampling.greedy
        request.depth_tested = [0] * (self.limits.depth + 1)
        request.depth_accepted = [0] * (self.limits.depth + 1)
        return request

    def plan(self, request: TreeRequest, budget: int) -> PlanSteps:
        """The controller's choice, then steps 0-2 for a draft round (lookup's nodes that pay,
        then the draft's children level by level, at most D levels, no node past the reach) or
        the copied candidates of a lookup round (none: a plain round), and the target feed."""
        # The walk commits one token past its path; no position may pass the context window.
        limits = self._limits(request)
        rnd = TreeRound(request, limits, room(request, budget, self.max_length), PlanClock())
        depth = min(limits.depth, rnd.reach)
        if self.policy is not None:
            depth = min(depth, self.policy.max_length())
        choice = self._choose(rnd, depth)
        rnd.mode = choice.mode
        request.since_plain = 0 if choice.mode == PLAIN else request.since_plain + 1
        if choice.mode == DRAFT:
            yield from self._draft_tree(rnd, depth)
        else:
            self._copy(rnd, choice)
        if rnd.tree.q is not None:  # verified beside the target's rows
            rnd.tree.q = [row.to(request.target.device) if row is not None else None for row in rnd.tree.q]
        rnd.modelled = rnd.so_far()[1]
        rnd.feed = request.target.tree_feed(request.seq, rnd.tree)
        rnd.planned = rnd.clock.seconds()
        return rnd

    def _limits(self, request: TreeRequest) -> TreeLimits:
        """The round's limits: with the curves as corrected by timed forwards at greedy decoding
        (whose output no tree shape changes); a sampled request's trees depend on its seed and
        the probed curves alone, so the same seed gives the same text (in a batch, the number of
        its mates shapes them too); the target's curve beside the mates' tokens, the draft's as
        its share of the levels it rides in with its drafting mates (those of the last round when
        the round is chosen, those of the level just drafted before each further level)."""
        limits = self.limits
        if self.corrected is not None and request.sampling.greedy:
            limits = replace(limits, target=self.corrected[0], draft=self.corrected[1])
        if request.mates and limits.target is not None:  # the round waits for the mates' tokens too
            shared = request.target.backend.capabilities.batching
            limits = replace(limits, target=Beside(limits.target, request.mates, shared))
        if request.drafting_mates and limits.draft is not None:  # its draft levels ride in theirs
            limits = replace(limits, draft=Share(limits.draft, 1 + request.drafting_mates))
        return limits

    def _choose(self, rnd: TreeRound, depth: int) -> RoundChoice:
        """The controller's choice (`tree_control.choose`; draft without cost curves). The
        proposer's likeliest continuation is found whatever the choice: the gate learns from it."""
        limits, request = rnd.limits, rnd.request
        space = min(rnd.reach, limits.nodes)
        found = self.proposer.continuations(request.seq, space, 1) if self.lookup != "off" else []
        rnd.chain = found[0] if found else []
        if limits.target is None or limits.draft is None:
            return RoundChoice(DRAFT, [], 0.0)
        if self.corrected is not None and request.sampling.greedy and request.since_plain >= EXPLORE_EVERY:
            return RoundChoice(PLAIN, [], 0.0)  # a one-token forward, timed: T(1) corrected
        gate, drafts = request.lookup_rates.gate.rate, request.draft_rounds
        curves = (limits.target, limits.draft, request.overhead)
        behind = len(request.seq) - request.draft.common_length(request.seq)
        return choose(*curves, rnd.chain, gate, drafts, depth, self.lookup, max(1, behind), request.mates)

    def _copy(self, rnd: TreeRound, choice: RoundChoice) -> None:
        """A lookup round's tree: the chosen candidates as a chain of lookup nodes, each valued at
        the gate's rate per token (a plain round: none); no draft forward."""
        gate = rnd.request.lookup_rates.gate.rate
        for i, token in enumerate(choice.candidates):
            node = Candidate(0.0, gate ** (i + 1), 0.0, i - 1, 0, token, None)
            rnd.append(node, drafted=False, lookup=True)
        rnd.shown.append(LookupTrie(-1, [], [], rnd.chain))  # the gate learns from the continuation

    def _draft_tree(self, rnd: TreeRound, depth: int) -> Generator[Feed, torch.Tensor, None]:
        """Steps 0 and 1 (module docstring): the draft's tree with lookup's nodes, a draft
        forward per level."""
        seq, draft = rnd.request.seq, rnd.request.draft
        trie = self._lookup_trie(rnd, -1, 1)
        first_feed = draft.tree_feed(seq, trie.as_tree()) if trie.tokens else draft.linear_feed(seq, 1)
        logits = yield from rnd.clock.forward(first_feed)
        rnd.draft_timings.append(draft.last_feed)
        frontier, logits, raw = self._hang(rnd, trie, [-1], logits, 0)
        for level in range(depth):
            chosen = select(rnd, propose(rnd, frontier, logits, raw, self.policy, self.eos_ids))
            frontier = [rnd.append(c, drafted=True, lookup=False) for c in chosen]
            rnd.limits = self._limits(rnd.request)  # the next level's share: who rode in this one
            if not frontier or level + 1 == depth or not worth_a_level(rnd, frontier, depth - level - 1):
                break
            # Where the draft leaves a copied span it may soon rejoin it: look up again there.
            trie = self._lookup_trie(rnd, max(frontier, key=lambda j: rnd.value[j]), len(frontier))
            first = len(draft.parents)  # the draft node id of the level's first node
            nodes, parents = feed(rnd.tree, frontier, trie, rnd.slots, first)
            logits = yield from rnd.clock.forward(Feed(draft, [], nodes, parents, len(nodes)))  # [m + L, V]
            rnd.draft_timings.append(draft.last_feed)
            rnd.slots.update({j: first + i for i, j in enumerate(frontier)})
            frontier, logits, raw = self._hang(rnd, trie, frontier, logits, first + len(frontier))

    def settle(self, request: TreeRequest, rnd: TreeRound, logits: torch.Tensor) -> RoundStats:
        """Steps 3-5 on the target's logits after the root and each node ([1 + N, V])."""
        settle_started = time.perf_counter()
        tree = rnd.tree
        p = process_logits(logits, request.sampling)  # [1 + N, V]
        verdict = verify_tree(p, tree, request.verify_gen)
        request.target.keep(verdict.path)
        request.draft.keep([rnd.slots[j] for j in verdict.path if j in rnd.slots])  # the fed prefix
        verified = len(verdict.path) + (self._learn(request, rnd, verdict.path) > len(verdict.path))
        request.lookup_rates.learn(rnd.shown, verdict.path, verdict.committed)
        if rnd.mode == DRAFT:
            request.draft_rounds.learn(len(verdict.committed), rnd.spent - request.overhead, len(tree))
        elapsed = own_seconds(rnd.planned, request, settle_started)
        # Learnt from wall time only at greedy decoding, whose output no tree shape changes: a
        # sampled request's trees must depend on its seed and the cached curves alone, so the
        # same seed gives the same text.
        # The overhead is the time beyond the forwards as timed (their cost is the curves' to
        # learn), so a round that also fed the prompt teaches it nothing wrong.
        if self.corrected is not None and request.sampling.greedy:
            self.corrected[0].observe(*request.target.last_feed)
            for timing in rnd.draft_timings:
                self.corrected[1].observe(*timing)
            forwards = request.target.last_feed[1] + sum(seconds for _, seconds in rnd.draft_timings)
            overhead = max(0.0, elapsed - forwards)
            request.overhead = OVERHEAD_DECAY * request.overhead + (1 - OVERHEAD_DECAY) * overhead
        if self.policy is not None:
            self.policy.observe(RoundFeedback(verified, len(verdict.path), len(verdict.committed), elapsed))
        request.seq.extend(verdict.committed)
        return RoundStats(
            committed=verdict.committed,
            origins=rnd.origins(verdict.path) + [TARGET],
            drafted=verified,
            verified=verified,
            accepted=len(verdict.path),
            drafted_total=len(tree),
            tests=verdict.tests,
            mode=rnd.mode,
        )

    def report(self, request: TreeRequest, metrics: GenerationMetrics) -> None:
        super().report(request, metrics)
        metrics.execution = "serial"
        metrics.tree_max_nodes, metrics.tree_max_depth = self.limits.nodes, self.limits.depth
        metrics.tree_rounds, metrics.tree_nodes_total = request.rounds, request.nodes_total
        metrics.tree_depth_total = request.depth_total
        metrics.depth_tested = list(request.depth_tested)
        metrics.depth_accepted = list(request.depth_accepted)

    def _learn(self, request: TreeRequest, rnd: TreeRound, path: list[int]) -> int:
        """Count the walk's tests by depth and feed the draft's to the calibration; the number
        of tests."""
        tree, tests, walked, node = rnd.tree, [], 0, -1
        for depth in range(len(path) + 1):
            children = tree.children(node)
            if not children:
                break
            walked += 1
            nxt = path[depth] if depth < len(path) else None
            drafted = [c for c in children if rnd.drafted[c]]
            if drafted:
                tests.append((sum(rnd.q[c] for c in drafted), nxt in drafted))
            if depth == len(request.depth_tested):  # a lookup chain past D
                request.depth_tested.append(0)
                request.depth_accepted.append(0)
            request.depth_tested[depth] += 1
            request.depth_accepted[depth] += nxt is not None
            if nxt is None:
                break
            node = nxt
        request.calibration.learn(tests)
        request.rounds += 1
        request.nodes_total += len(tree)
        request.depth_total += max((len(tree.path(j)) for j in range(len(tree))), default=0)
        return walked

    def _lookup_trie(self, rnd: TreeRound, anchor: int, width: int) -> LookupTrie:
        """The lookup trie to show the draft under `anchor` (-1: the root) in a forward already
        `width` wide (`tree_lookup.build_trie`): the proposer's continuations of the context up
        to it (the likeliest first; LOOKUP_BRANCHES at the root, one below), within N nodes and
        the reach. Lookup nodes cost no draft step, only verify slots and width in a draft
        forward, so they may reach past D. With "auto" and cost curves each is as long as the
        likeliest would pay for those, its i-th token guessed accepted with probability a^i:
        a = lookup's acceptance rate in this request (the gate), and at the root the larger of
        that and its rate where the draft agreed (a copy the draft agrees with goes on being
        accepted; `_hang` cuts where it does not). "on": whole. At the root the likeliest
        continuation is found even when none of it pays: the gate learns from it."""
        tree, limits, rates = rnd.tree, rnd.limits, rnd.request.lookup_rates
        path = tree.path(anchor)
        space = min(rnd.reach - len(path), limits.nodes - len(tree))
        length = space
        if self.lookup == "auto" and limits.target is not None:
            rate = rates.gate.rate if anchor >= 0 else max(rates.gate.rate, rates.agreed.rate)
            base = rnd.value[anchor] if anchor >= 0 else 1.0
            values = [base * rate ** (i + 1) for i in range(space)]
            length = best_prefix(values, *rnd.so_far(), len(tree), limits.target, limits.draft, width)
        if self.lookup == "off" or (length < 1 and anchor >= 0):
            return LookupTrie(anchor, [], [])
        context = rnd.request.seq + [tree.tokens[a] for a in path]
        copies = self.proposer.continuations(context, space, LOOKUP_BRANCHES if anchor < 0 else 1)
        return build_trie(anchor, copies, length, space, self.eos_ids)

    def _hang(
        self, rnd: TreeRound, trie: LookupTrie, frontier: list[int], logits: torch.Tensor, first: int
    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """After a draft forward over `frontier` and then `trie`'s nodes (logits [m + L, V], the
        trie's nodes with draft node ids from `first` on): append the trie's nodes that pay to
        the tree (`_worth_verifying`) and record the trie; the next frontier (`frontier` plus
        those nodes), its logits and their softmax."""
        costs, m = rnd.limits.draft, len(frontier)
        rnd.spent += costs.seconds(m + len(trie.tokens)) if costs else 0.0
        raw = logits.float().softmax(-1)  # [m + L, V] the draft's own distributions
        rnd.shown.append(trie)
        if not trie.tokens:
            return frontier, logits, raw
        rows = [frontier.index(trie.anchor)] + list(range(m, m + len(trie.tokens)))
        index = {-1: trie.anchor}  # a kept trie node's index in the tree
        for j in self._worth_verifying(rnd, trie, raw[rows]):  # parents first
            node = Candidate(0.0, trie.values[j], trie.q[j], index[trie.parents[j]], 0, trie.tokens[j], None)
            index[j] = rnd.append(node, drafted=False, lookup=True)
            rnd.slots[index[j]] = first + j
        kept = sorted(index)[1:]
        rows = list(range(m)) + [m + j for j in kept]
        return frontier + [index[j] for j in kept], logits[rows], raw[rows]

    def _worth_verifying(self, rnd: TreeRound, trie: LookupTrie, raw: torch.Tensor) -> list[int]:
        """Value the trie's nodes now that the draft has seen them (`tree_lookup.score`; raw:
        [1 + L, V], the draft's distributions after the anchor and after each trie node) and
        pick those worth verifying: their indices, parents first. With "auto" and cost curves
        the most valuable ones that pay for their verify slots (`costs.best_prefix`; a node is
        worth at most its parent, so they include their ancestors); otherwise all."""
        request, target = rnd.request, rnd.limits.target
        anchor = rnd.value[trie.anchor] if trie.anchor >= 0 else 1.0
        score(trie, raw, anchor, request.calibration.accept, request.lookup_rates.disagreed.rate)
        order = range(len(trie.tokens))
        if self.lookup == "auto" and target is not None:
            order = sorted(order, key=lambda j: (-trie.values[j], j))
            values = [trie.values[j] for j in order]
            order = order[: best_prefix(values, *rnd.so_far(), len(rnd.tree), target)]
        return sorted(order)
