"""SpecBranch on one shared device: a draft token tree, verified by the target in one pass.

Where draft and target share a device, running them at the same time splits its compute; what
the device gives away almost for free is *width*: a target forward over 8-16 tokens costs about
what one over 2-4 costs. So the branches SpecBranch would draft in parallel become a token
tree that the target verifies in one forward (ALGORITHM.md, "Tree execution"). One round:

  1. grow the tree on the draft, level by level, one batched draft forward per level
     (`CachedModel.tree_step` over the frontier): a node gets k children,
     k = max(1, floor(k_max * (1 - max q))) (SpecBranch's rule: branch where the draft is
     unsure), the draft's top-k (deterministic) or k draws without replacement from its processed
     q (sampled). Children are kept best first, up to `nodes` nodes and `depth` levels, by their
     parent's path probability (the product of the draft's probabilities along it) times the
     draft probability of their *rank* among the siblings (the i-th largest for the i-th child):
     never by the drawn token itself, since keeping a sampled child because of what it is would
     bias rule 4 (a drawn token's identity may shape only the levels below it). A parent keeps a
     prefix of its children in draw order (rule 4 tests them in that order). EOS nodes get no
     children;
  2. one target forward over the uncached committed tail and every node, with a tree attention
     mask (`CachedModel.logits_for_tree`): p after the root and after each node;
  3. walk the tree from the root (`verify.verify_tree`, rule 3 or 4): commit the accepted path
     and the recovered or bonus token after it;
  4. keep the accepted path's KV in both caches (`keep_branch`) and drop the rest.

Everything the tree's shape depends on is known before verification, so the output is exactly
the target's (greedy: token for token; sampled: in distribution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from specbranch.config import SamplingParams
from specbranch.decoders.base import SerialDecoder
from specbranch.metrics import RoundStats
from specbranch.runner import CachedModel
from specbranch.sampling import process_logits, sample_without_replacement
from specbranch.tree import TokenTree
from specbranch.verify import verify_tree


@dataclass(frozen=True)
class TreeBudget:
    """How large a tree may grow: `nodes` drafted tokens in all (N), `depth` levels (D), at most
    `k_max` children per node."""

    nodes: int
    depth: int
    k_max: int


@dataclass(frozen=True)
class _Candidate:
    """A child the draft proposes: `rank` (what selection reads: the parent's path probability
    times the draft probability of this child's rank), `score` (its own path probability, for
    its descendants), parent node, draw order among its siblings, token, and (sampled) the
    distribution it was drawn from."""

    rank: float
    score: float
    parent: int
    order: int
    token: int
    row: torch.Tensor | None


class TreeDecoder(SerialDecoder):
    """Draft a tree, verify it in one target forward; see the module docstring.

    draft_sampling: "sample" (children drawn without replacement, rule 4) or "greedy" (top-k,
    rule 3); at temperature 0 the deterministic rule is always used.
    """

    def __init__(
        self,
        target: CachedModel,
        draft: CachedModel,
        draft_sampling: str,
        budget: TreeBudget,
        max_length: int,
        eos_ids: frozenset[int],
    ) -> None:
        self.target, self.draft, self.budget = target, draft, budget
        self.draft_sampling, self.max_length, self.eos_ids = draft_sampling, max_length, eos_ids

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        super().start(prompt_ids, sampling, seed)
        self.sampled = self.draft_sampling == "sample" and not sampling.greedy

    def step(self, seq: list[int], budget: int) -> RoundStats:
        # The walk commits one token past its path; no position may pass the context window.
        depth = max(0, min(self.budget.depth, budget - 1, self.max_length - len(seq) - 1))
        tree, slots = self._grow(seq, depth)
        p = process_logits(self.target.logits_for_tree(seq, tree), self.sampling)  # [1 + N, V]
        verdict = verify_tree(p, tree, self.verify_gen)
        path_tokens = [tree.tokens[j] for j in verdict.path]
        self.target.keep_branch([len(seq) + j for j in verdict.path], path_tokens)
        fed = [slots[j] for j in verdict.path if j in slots]  # the path's nodes the draft has KV for
        self.draft.keep_branch(fed, path_tokens[: len(fed)])
        stopped_at_children = bool(tree.children(verdict.path[-1] if verdict.path else -1))
        verified = len(verdict.path) + stopped_at_children
        return RoundStats(
            committed=verdict.committed,
            drafted=verified,
            verified=verified,
            accepted=len(verdict.path),
            drafted_total=len(tree),
        )

    def _grow(self, seq: list[int], depth: int) -> tuple[TokenTree, dict[int, int]]:
        """The draft's tree after seq, and the draft cache slot of every node it fed."""
        tree = TokenTree([], [], [] if self.sampled else None)
        scores: list[float] = []
        slots: dict[int, int] = {}
        frontier, logits = [-1], self.draft.logits_for(seq, 1)  # logits: [len(frontier), V]
        for level in range(depth):
            candidates = self._propose(tree, scores, frontier, logits)
            frontier = self._add(tree, scores, self._select(candidates, self.budget.nodes - len(tree)))
            if not frontier or level + 1 == depth:
                break
            base = self.draft.cache_length()
            logits = self.draft.tree_step(
                [tree.tokens[j] for j in frontier],
                [[slots[a] for a in tree.path(j)[:-1]] for j in frontier],
                [len(tree.path(j)) - 1 for j in frontier],
            )  # [len(frontier), V]
            slots.update({j: base + i for i, j in enumerate(frontier)})
        return tree, slots

    def _propose(
        self, tree: TokenTree, scores: list[float], frontier: list[int], logits: torch.Tensor
    ) -> list[_Candidate]:
        """Children for every frontier node from the draft's logits there: [len(frontier), V]."""
        raw = logits.float().softmax(-1)  # [m, V] the draft's own distribution: confidence, scores
        q = process_logits(logits, self.sampling)  # [m, V]
        candidates = []
        for i, node in enumerate(frontier):
            if node >= 0 and tree.tokens[node] in self.eos_ids:
                continue
            k = max(1, math.floor(self.budget.k_max * (1.0 - float(raw[i].max()))))
            if self.sampled:
                tokens, rows = sample_without_replacement(q[i], k, self.draft_gen)
            else:
                tokens, rows = torch.topk(logits[i], k).indices.tolist(), [None] * k
            base = scores[node] if node >= 0 else 1.0
            ranked = torch.topk(raw[i], k).values.tolist()  # the k largest, for the ranks
            candidates += [
                _Candidate(base * ranked[order], base * float(raw[i][t]), node, order, t, row)
                for order, (t, row) in enumerate(zip(tokens, rows, strict=True))
            ]
        return candidates

    @staticmethod
    def _select(candidates: list[_Candidate], room: int) -> list[_Candidate]:
        """The best-scoring candidates that fit in `room`, each parent keeping a prefix of its
        children in draw order; returned in (parent, draw order) order."""
        chosen: set[tuple[int, int]] = set()
        for c in sorted(candidates, key=lambda c: -c.rank):
            if len(chosen) == room:
                break
            if c.order == 0 or (c.parent, c.order - 1) in chosen:
                chosen.add((c.parent, c.order))
        kept = [c for c in candidates if (c.parent, c.order) in chosen]
        return sorted(kept, key=lambda c: (c.parent, c.order))

    @staticmethod
    def _add(tree: TokenTree, scores: list[float], chosen: list[_Candidate]) -> list[int]:
        """Append the chosen children to the tree; their node indices."""
        for c in chosen:
            tree.tokens.append(c.token)
            tree.parents.append(c.parent)
            scores.append(c.score)
            if tree.q is not None:
                tree.q.append(c.row)
        return list(range(len(tree) - len(chosen), len(tree)))
