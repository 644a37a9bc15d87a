"""SpecBranch on one shared device: a draft token tree, verified by the target in one pass.

Where draft and target share a device, running them at the same time splits its compute; what
the device gives away almost for free is *width*: a target forward over 8-16 tokens costs about
what one over 2-4 costs. So the branches SpecBranch would draft in parallel become a token
tree that the target verifies in one forward (ALGORITHM.md, "Tree execution"). One round:

  0. (`--lookup`) open the tree with prompt lookup's continuations after the root
     (`_lookup`, `decoders/tree_lookup.py`: a trie of up to 4 copies, up to N nodes, past D),
     shown to the draft in the forward it needs anyway for the uncached committed tail
     (`CachedModel.logits_for_tree`): one forward gives the draft's distribution after the
     root and after every copied token, so copied tokens cost no draft step. Where the
     draft's top token is not the copy's, copying is likely to stop: the trie's nodes are
     valued by the draft's agreement and the acceptance seen in the request, and those that
     pay are kept (`_score_lookup`, `_hang`);
  1. grow the tree on the draft, level by level, one batched draft forward per level
     (`CachedModel.tree_step` over the frontier; the first level is the forward of step 0,
     over the root and every lookup node; before each later one, lookup runs again below the
     level's likeliest new node and its trie rides in that forward): a node gets k children,
     k = max(1, floor(k_max * (1 - max q))) (SpecBranch's rule: branch where the draft is
     unsure), the draft's top-k (deterministic) or k draws without replacement from its processed
     q (sampled). Children are kept best first, up to `nodes` nodes and `depth` levels, by their
     parent's path probability (the product of the draft's probabilities along it) times the
     draft probability of their *rank* among the siblings (the i-th largest for the i-th child):
     never by the drawn token itself, since keeping a sampled child because of what it is would
     bias rule 4 (a drawn token's identity may shape only the levels below it). A parent keeps a
     prefix of its children in draw order (rule 4 tests them in that order). EOS nodes get no
     children. With measured cost curves (`costs.CostCurve`) a level keeps the best children
     only while each pays for its verify slot (`costs.best_prefix`: expected committed tokens
     per second rise), and the tree grows another level only while a run of further levels
     along its best node would pay for their draft steps (`_worth_a_level`); a node's expected
     acceptance is its path probability with each factor calibrated by the acceptance the
     walks observed so far in the request (`Calibration`), and at greedy decoding a round's
     seconds include its measured unmodelled time (`overhead`). Without curves the tree
     fills N nodes and D levels. A node's drafted children exclude its lookup children's
     tokens (sampled ones are drawn from q without them), and a lookup child counts as
     drafted where it is among the draft's top k;
  2. one target forward over the uncached committed tail and every node, with a tree attention
     mask (`CachedModel.logits_for_tree`): p after the root and after each node;
  3. walk the tree from the root (`verify.verify_tree`, rule 3, 4 or both): commit the accepted path
     and the recovered or bonus token after it;
  4. keep the accepted path's KV in both caches (`keep_branch`) and drop the rest;
  5. learn from the walk: which tested nodes had a child accepted, by depth (`Calibration`,
     the acceptance-by-depth metrics).

Everything the tree's shape depends on is known before verification, so the output is exactly
the target's (greedy: token for token; sampled: in distribution).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from specbranch.config import SamplingParams
from specbranch.costs import CostCurve, best_prefix
from specbranch.decoders.base import SerialDecoder
from specbranch.decoders.lookup import lookup_continuations
from specbranch.decoders.tree_lookup import LOOKUP_BRANCHES, LookupRates, LookupTrie, build_trie, feed, score
from specbranch.metrics import BRANCH, DRAFT, LOOKUP, TARGET, GenerationMetrics, RoundStats
from specbranch.policies import DraftPolicy, RoundFeedback
from specbranch.runner import CachedModel
from specbranch.sampling import process_logits, sample_without_replacement, without
from specbranch.tree import TokenTree
from specbranch.verify import verify_tree

OVERHEAD_DECAY = 0.9  # weight of the past in the running mean of a round's unmodelled seconds


@dataclass(frozen=True)
class TreeBudget:
    """How large a tree may grow: `nodes` drafted tokens in all (N), `depth` levels (D), at most
    `k_max` children per node. `target` / `draft`: measured cost curves (target forward over n
    tokens, draft level n nodes wide); with them each round's tree is sized by the throughput
    model within N and D, without them it is filled to N and D."""

    nodes: int
    depth: int
    k_max: int
    target: CostCurve | None = None
    draft: CostCurve | None = None


@dataclass
class Calibration:
    """How the draft's probabilities turn into the target's acceptances, learnt in a request.

    At every node the walk tested, the draft predicted that one of its children would be
    accepted with probability sum(q of the children) (capped at 1). `tests` counts those
    tests, `entered` the ones where a child was accepted, `predicted` sums the predictions,
    all decaying by DECAY per round so the estimates follow the text (code, prose).
    beta = (entered + 1) / (predicted + 1): a node's calibrated conditional acceptance is
    min(1, beta * q). `step_acceptance` = (entered + 1) / (tests + 2): how often a tested node
    had a child accepted, the guess for a level not drafted yet.
    """

    DECAY = 0.9
    tests: float = 0.0
    entered: float = 0.0
    predicted: float = 0.0

    @property
    def beta(self) -> float:
        return (self.entered + 1.0) / (self.predicted + 1.0)

    @property
    def step_acceptance(self) -> float:
        return (self.entered + 1.0) / (self.tests + 2.0)

    def accept(self, q: float) -> float:
        """Calibrated probability that a child the draft gives probability q is accepted."""
        return min(1.0, self.beta * q)

    def learn(self, tests: list[tuple[float, bool]]) -> None:
        """One round's tests: (the draft's predicted acceptance, whether a child was accepted)."""
        self.tests = self.DECAY * self.tests + len(tests)
        self.entered = self.DECAY * self.entered + sum(hit for _, hit in tests)
        self.predicted = self.DECAY * self.predicted + sum(min(1.0, q) for q, _ in tests)


@dataclass
class _Nodes:
    """Per-node numbers beside a TokenTree: `value` the calibrated probability that the walk
    accepts the node (its path's product), `q` the draft's probability of its token; and
    `spent`, the modelled seconds of the draft forwards that grew the tree so far; which
    proposer proposed each node (the draft, prompt lookup, or both)."""

    value: list[float] = field(default_factory=list)
    q: list[float] = field(default_factory=list)
    spent: float = 0.0
    lookup: list[bool] = field(default_factory=list)  # whether prompt lookup proposed the node
    drafted: list[bool] = field(default_factory=list)  # whether the draft proposed it


@dataclass(frozen=True)
class _Candidate:
    """A child the draft proposes: `rank` (what selection reads: the parent's value times the
    calibrated acceptance of this child's *rank*), `value` and `q` (its value and the draft's
    probability of its own token: they shape only the levels below it), parent node, draw order
    among its siblings, token, and (sampled) the distribution it was drawn from."""

    rank: float
    value: float
    q: float
    parent: int
    order: int
    token: int
    row: torch.Tensor | None


class TreeDecoder(SerialDecoder):
    """Draft a tree, verify it in one target forward; see the module docstring.

    draft_sampling: "sample" (children drawn without replacement, rule 4) or "greedy" (top-k,
    rule 3); at temperature 0 the deterministic rule is always used.
    policy: a draft-length policy (`--draft-policy`), or None. It shapes trees only with what is
    known before verification: its `max_length()` caps a round's depth, and a node below the
    root gets children only where its `keep()` accepts the draft's distribution there; it
    observes every round.
    """

    def __init__(
        self,
        target: CachedModel,
        draft: CachedModel,
        draft_sampling: str,
        budget: TreeBudget,
        max_length: int,
        eos_ids: frozenset[int],
        policy: DraftPolicy | None = None,
        lookup: str = "off",
    ) -> None:
        self.target, self.draft, self.budget, self.policy = target, draft, budget, policy
        self.draft_sampling, self.max_length, self.eos_ids = draft_sampling, max_length, eos_ids
        self.lookup = lookup

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        super().start(prompt_ids, sampling, seed)
        self.sampled = self.draft_sampling == "sample" and not sampling.greedy
        self.calibration = Calibration()
        self.lookup_rates = LookupRates()  # how often lookup's tokens are accepted
        self.overhead = 0.0  # seconds a round takes beyond its modelled forwards (a running mean)
        self.rounds = self.tree_nodes = self.tree_depth = 0
        self.depth_tested = [0] * (self.budget.depth + 1)
        self.depth_accepted = [0] * (self.budget.depth + 1)

    def step(self, seq: list[int], budget: int) -> RoundStats:
        start = time.perf_counter()
        # The walk commits one token past its path; no position may pass the context window.
        reach = max(0, min(budget - 1, self.max_length - len(seq) - 1))
        depth = min(self.budget.depth, reach)
        if self.policy is not None:
            depth = min(depth, self.policy.max_length())
        tree, nodes, slots, shown = self._grow(seq, depth, reach)
        modelled = self._so_far(tree, nodes)[1]
        p = process_logits(self.target.logits_for_tree(seq, tree), self.sampling)  # [1 + N, V]
        verdict = verify_tree(p, tree, self.verify_gen)
        path_tokens = [tree.tokens[j] for j in verdict.path]
        self.target.keep_branch([len(seq) + j for j in verdict.path], path_tokens)
        fed = [slots[j] for j in verdict.path if j in slots]  # the path's nodes the draft has KV for
        self.draft.keep_branch(fed, path_tokens[: len(fed)])
        verified = len(verdict.path) + (self._learn(tree, nodes, verdict.path) > len(verdict.path))
        self.lookup_rates.learn(shown, verdict.path, verdict.committed)
        elapsed = time.perf_counter() - start
        # Learnt from wall time only at greedy decoding, whose output no tree shape changes: a
        # sampled request's trees must depend on its seed and the cached curves alone, so the
        # same seed gives the same text.
        if self.budget.target is not None and self.sampling.greedy:
            overhead = max(0.0, elapsed - (modelled - self.overhead))
            self.overhead = OVERHEAD_DECAY * self.overhead + (1 - OVERHEAD_DECAY) * overhead
        if self.policy is not None:
            self.policy.observe(RoundFeedback(verified, len(verdict.path), len(verdict.committed), elapsed))
        return RoundStats(
            committed=verdict.committed,
            origins=_origins(tree, nodes, verdict.path) + [TARGET],
            drafted=verified,
            verified=verified,
            accepted=len(verdict.path),
            drafted_total=len(tree),
            tests=verdict.tests,
        )

    def report(self, metrics: GenerationMetrics) -> None:
        super().report(metrics)
        metrics.execution = "serial"
        metrics.tree_max_nodes, metrics.tree_max_depth = self.budget.nodes, self.budget.depth
        metrics.tree_rounds, metrics.tree_nodes = self.rounds, self.tree_nodes
        metrics.tree_depth = self.tree_depth
        metrics.depth_tested, metrics.depth_accepted = list(self.depth_tested), list(self.depth_accepted)

    def _learn(self, tree: TokenTree, nodes: _Nodes, path: list[int]) -> int:
        """Count the walk's tests by depth and feed the draft's to the calibration; the number
        of tests."""
        tests, walked, node = [], 0, -1
        for depth in range(len(path) + 1):
            children = tree.children(node)
            if not children:
                break
            walked += 1
            nxt = path[depth] if depth < len(path) else None
            drafted = [c for c in children if nodes.drafted[c]]
            if drafted:
                tests.append((sum(nodes.q[c] for c in drafted), nxt in drafted))
            if depth == len(self.depth_tested):  # a lookup chain past D
                self.depth_tested.append(0)
                self.depth_accepted.append(0)
            self.depth_tested[depth] += 1
            self.depth_accepted[depth] += nxt is not None
            if nxt is None:
                break
            node = nxt
        self.calibration.learn(tests)
        self.rounds += 1
        self.tree_nodes += len(tree)
        self.tree_depth += max((len(tree.path(j)) for j in range(len(tree))), default=0)
        return walked

    def _lookup(
        self, seq: list[int], tree: TokenTree, nodes: _Nodes, anchor: int, reach: int, width: int
    ) -> LookupTrie:
        """The lookup trie to show the draft under `anchor` (-1: the root) in a forward already
        `width` wide (`tree_lookup.build_trie`): prompt lookup's continuations of the context up
        to it (`decoders.lookup.lookup_continuations`, the likeliest first; LOOKUP_BRANCHES at
        the root, one below), within N nodes and the reach. Lookup nodes cost no draft step,
        only verify slots and width in a draft forward, so they may reach past D. With "auto"
        and cost curves each is as long as the likeliest would pay for those, its i-th token
        guessed accepted with probability a^i: a = lookup's acceptance rate in this request
        (the gate), and at the root the larger of that and its rate where the draft agreed (a
        copy the draft agrees with goes on being accepted; `_score_lookup` cuts where it does
        not). "on": whole. At the root the likeliest continuation is found even when none of it
        pays: the gate learns from it."""
        path = tree.path(anchor)
        room = min(reach - len(path), self.budget.nodes - len(tree))
        length, target, rates = room, self.budget.target, self.lookup_rates
        if self.lookup == "auto" and target is not None:
            rate = rates.gate.rate if anchor >= 0 else max(rates.gate.rate, rates.agreed.rate)
            base = nodes.value[anchor] if anchor >= 0 else 1.0
            values = [base * rate ** (i + 1) for i in range(room)]
            so_far = self._so_far(tree, nodes)
            length = best_prefix(values, *so_far, len(tree), target, self.budget.draft, width)
        if self.lookup == "off" or (length < 1 and anchor >= 0):
            return LookupTrie(anchor, [], [])
        context = seq + [tree.tokens[a] for a in path]
        copies = lookup_continuations(context, num_tokens=room, count=LOOKUP_BRANCHES if anchor < 0 else 1)
        return build_trie(anchor, copies, length, room, self.eos_ids)

    def _so_far(self, tree: TokenTree, nodes: _Nodes) -> tuple[float, float]:
        """The tree's expected committed tokens (the bonus or correction plus its nodes' values)
        and its modelled seconds (draft forwards so far plus a target forward over it)."""
        target = self.budget.target
        return 1.0 + sum(nodes.value), nodes.spent + (target.seconds(1 + len(tree)) if target else 0.0)

    def _grow(
        self, seq: list[int], depth: int, reach: int
    ) -> tuple[TokenTree, _Nodes, dict[int, int], list[LookupTrie]]:
        """The round's tree after seq: lookup nodes under the root that pay, then the draft's
        children level by level (at most `depth` levels, no node deeper than `reach`), and
        before each level's draft forward lookup nodes under its likeliest new node; its nodes'
        numbers, the draft cache slot of every node it fed, and the lookup tries the draft saw
        (the root's first)."""
        tree, nodes = TokenTree([], [], [] if self.sampled else None), _Nodes()
        slots: dict[int, int] = {}
        shown: list[LookupTrie] = []
        # What a round costs beyond its forwards (sampling, verification, the committed context
        # the probe's short one lacks) counts as spent: it makes every drafted token cheaper.
        nodes.spent = self.overhead
        # The draft sees the lookup nodes in the forward it needs anyway (the uncached committed
        # tail, later a level's new nodes): one forward gives its distribution after each of
        # them, so it drafts alternatives beside them and on past their ends, with no draft step
        # per copied token.
        trie = self._lookup(seq, tree, nodes, -1, reach, 1)
        draft = self.draft
        logits = draft.logits_for_tree(seq, trie.as_tree()) if trie.tokens else draft.logits_for(seq, 1)
        frontier, logits, raw = self._hang(trie, [-1], logits, tree, nodes, slots, len(seq), shown)
        for level in range(depth):
            candidates = self._propose(tree, nodes, frontier, logits, raw, reach)
            frontier = self._add(tree, nodes, self._select(candidates, tree, nodes))
            if not frontier or level + 1 == depth:
                break
            if not self._worth_a_level(tree, nodes, frontier, depth - level - 1):
                break
            # Where the draft leaves a copied span it may soon rejoin it: look up again there.
            anchor = max(frontier, key=lambda j: nodes.value[j])
            trie = self._lookup(seq, tree, nodes, anchor, reach, len(frontier))
            base = self.draft.cache_length()
            logits = self.draft.tree_step(*feed(tree, frontier, trie, slots, base))  # [m + L, V]
            slots.update({j: base + i for i, j in enumerate(frontier)})
            first = base + len(frontier)  # the trie's first cache slot
            frontier, logits, raw = self._hang(trie, frontier, logits, tree, nodes, slots, first, shown)
        return tree, nodes, slots, shown

    def _hang(
        self, trie: LookupTrie, frontier: list[int], logits: torch.Tensor, tree: TokenTree, nodes: _Nodes,
        slots: dict[int, int], first: int, shown: list[LookupTrie],
    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """After a draft forward over `frontier` and then `trie`'s nodes (logits [m + L, V], the
        trie's nodes from cache slot `first` on): append the trie's nodes that pay to the tree
        (`_score_lookup`) and record the trie; the next frontier (`frontier` plus those nodes),
        its logits and their softmax."""
        costs, m = self.budget.draft, len(frontier)
        nodes.spent += costs.seconds(m + len(trie.tokens)) if costs else 0.0
        raw = logits.float().softmax(-1)  # [m + L, V] the draft's own distributions
        shown.append(trie)
        if not trie.tokens:
            return frontier, logits, raw
        rows = [frontier.index(trie.anchor)] + list(range(m, m + len(trie.tokens)))
        index = {-1: trie.anchor}  # a kept trie node's index in the tree
        for j in self._score_lookup(trie, raw[rows], tree, nodes):  # parents first
            node = _Candidate(0.0, trie.values[j], trie.q[j], index[trie.parents[j]], 0, trie.tokens[j], None)
            index[j] = _append(tree, nodes, node)
            nodes.lookup[-1] = True
            slots[index[j]] = first + j
        kept = sorted(index)[1:]
        rows = list(range(m)) + [m + j for j in kept]
        return frontier + [index[j] for j in kept], logits[rows], raw[rows]

    def _score_lookup(self, trie: LookupTrie, raw: torch.Tensor, tree: TokenTree, nodes: _Nodes) -> list[int]:
        """Value the trie's nodes now that the draft has seen them (`tree_lookup.score`; raw:
        [1 + L, V], the draft's distributions after the anchor and after each trie node) and
        pick those worth verifying: their indices, parents first. With "auto" and cost curves
        the most valuable ones that pay for their verify slots (`costs.best_prefix`; a node is
        worth at most its parent, so they include their ancestors); otherwise all."""
        anchor = nodes.value[trie.anchor] if trie.anchor >= 0 else 1.0
        score(trie, raw, anchor, self.calibration.accept, self.lookup_rates.disagreed.rate)
        target, order = self.budget.target, range(len(trie.tokens))
        if self.lookup == "auto" and target is not None:
            order = sorted(order, key=lambda j: (-trie.values[j], j))
            values = [trie.values[j] for j in order]
            order = order[: best_prefix(values, *self._so_far(tree, nodes), len(tree), target)]
        return sorted(order)

    def _propose(
        self, tree: TokenTree, nodes: _Nodes, frontier: list[int], logits: torch.Tensor,
        raw: torch.Tensor, reach: int,
    ) -> list[_Candidate]:
        """Children for every frontier node from the draft's logits there and their softmax
        `raw` (both [len(frontier), V]), none below depth `reach`. A frontier node on lookup's
        chain already has its chain child: it counts as drafted when it is among the draft's
        top k, and the other children exclude its token."""
        q = process_logits(logits, self.sampling) if self.sampled else raw  # [m, V]
        kept = self.policy.keep(raw) if self.policy is not None else [True] * len(frontier)
        ks = [max(1, math.floor(self.budget.k_max * (1.0 - m))) for m in raw.max(-1).values.tolist()]
        tops = torch.topk(raw, max(ks), dim=-1).indices.tolist()  # [m, max k]
        links: dict[int, list[int]] = {}  # lookup's children of a node
        for c in range(len(tree)):
            if nodes.lookup[c]:
                links.setdefault(tree.parents[c], []).append(c)
        candidates = []
        for i, (node, k) in enumerate(zip(frontier, ks, strict=True)):
            chain = links.get(node, [])
            for c in chain:
                nodes.drafted[c] = tree.tokens[c] in tops[i][:k]
                k -= nodes.drafted[c]
            deep = node >= 0 and len(tree.path(node)) >= reach
            if k < 1 or deep or (node >= 0 and (tree.tokens[node] in self.eos_ids or not kept[i])):
                continue
            base = nodes.value[node] if node >= 0 else 1.0
            taken = [tree.tokens[c] for c in chain]
            candidates += self._children(node, base, k, taken, raw[i], q[i], logits[i])
        return candidates

    def _children(
        self, node: int, base: float, k: int, taken: list[int], raw: torch.Tensor, q: torch.Tensor,
        logits: torch.Tensor,
    ) -> list[_Candidate]:
        """Up to k new children of `node` (value `base`), none of the tokens `taken` by its
        existing children: the draft's top-k, or k draws without replacement from its processed
        q ([V]) with `taken` removed; ranks from the k largest of raw ([V]) outside `taken`."""
        rest = raw.index_fill(0, torch.tensor(taken, device=raw.device), 0.0) if taken else raw  # [V]
        if self.sampled:
            tokens, rows = sample_without_replacement(without(q, taken), k, self.draft_gen)
        else:
            tokens = torch.topk(logits.masked_fill(rest == 0, float("-inf")), k).indices.tolist()
            tokens = [t for t in tokens if rest[t] > 0]
            rows = [None] * len(tokens)
        ranked = torch.topk(rest, len(tokens)).values.tolist()  # the k largest, for the ranks
        accept = self.calibration.accept
        return [
            _Candidate(base * accept(ranked[order]), base * accept(own), own, node, order, t, row)
            for order, (t, row) in enumerate(zip(tokens, rows, strict=True))
            for own in (float(raw[t]),)
        ]

    def _select(
        self, candidates: list[_Candidate], tree: TokenTree, nodes: _Nodes
    ) -> list[_Candidate]:
        """The children to add: best rank first, each parent keeping a prefix of its children in
        draw order, within the node budget and (with cost curves) as many as pay for their
        verify slots; returned in (parent, draw order) order."""
        chosen: list[_Candidate] = []
        taken: set[tuple[int, int]] = set()
        for c in sorted(candidates, key=lambda c: -c.rank):
            if len(chosen) == self.budget.nodes - len(tree):
                break
            if c.order == 0 or (c.parent, c.order - 1) in taken:
                taken.add((c.parent, c.order))
                chosen.append(c)
        if self.budget.target is not None:
            values = [c.rank for c in chosen]
            chosen = chosen[: best_prefix(values, *self._so_far(tree, nodes), len(tree), self.budget.target)]
        return sorted(chosen, key=lambda c: (c.parent, c.order))

    def _worth_a_level(self, tree: TokenTree, nodes: _Nodes, frontier: list[int], levels: int) -> bool:
        """Whether drafting on pays: the best frontier node's chain is guessed to go on being
        accepted, level after level, as often as tested nodes have been (`step_acceptance`),
        and some of the next `levels` levels (the first over the whole frontier, the rest one
        node wide) must raise the expected committed tokens per second after paying their
        draft steps and verify slots. Looking several levels ahead matters: on predictable text
        one level rarely pays for itself while a run of them does."""
        target, draft = self.budget.target, self.budget.draft
        if target is None or draft is None:
            return True
        (expected, seconds), n = self._so_far(tree, nodes), len(tree)
        value, step = max(nodes.value[j] for j in frontier), self.calibration.step_acceptance
        gain, drafting = 0.0, draft.seconds(len(frontier))
        for ahead in range(1, levels + 1):
            value *= step
            gain += value
            verify = target.seconds(1 + n + ahead) - target.seconds(1 + n)
            cost = drafting + (ahead - 1) * draft.seconds(1) + verify
            if (expected + gain) / (seconds + cost) > expected / seconds:
                return True
        return False

    @staticmethod
    def _add(tree: TokenTree, nodes: _Nodes, chosen: list[_Candidate]) -> list[int]:
        """Append the draft's chosen children to the tree; their node indices."""
        return [_append(tree, nodes, c, drafted=True) for c in chosen]


def _append(tree: TokenTree, nodes: _Nodes, c: _Candidate, drafted: bool = False) -> int:
    """Append one node (a drafted child, or with drafted=False a lookup candidate, value 0:
    no draft probability vouches for it) to the tree and its numbers; its index."""
    tree.tokens.append(c.token)
    tree.parents.append(c.parent)
    if tree.q is not None:
        tree.q.append(c.row)
    nodes.value.append(c.value)
    nodes.q.append(c.q)
    nodes.drafted.append(drafted)
    nodes.lookup.append(False)
    return len(tree) - 1


def _origins(tree: TokenTree, nodes: _Nodes, path: list[int]) -> list[str]:
    """Where the accepted path's tokens came from: prompt lookup (a node only lookup proposed),
    a branch (below a drafted node that is not its parent's first drafted child, the draft's
    likeliest), or the draft's likeliest line."""
    origins, off_line = [], False
    for node in path:
        first = next((c for c in tree.children(tree.parents[node]) if nodes.drafted[c]), None)
        off_line = off_line or (nodes.drafted[node] and node != first)
        origins.append(BRANCH if off_line else DRAFT if nodes.drafted[node] else LOOKUP)
    return origins
