"""Prompt lookup inside a SpecBranch token tree: the copied tokens a round shows the draft, what
the draft makes of them, and what a round teaches about them (ALGORITHM.md, "Lookup branches").

A *trie* holds the continuations prompt lookup found after one tree node, its *anchor* (the
root, or a drafted node lower down): deterministic candidates, merged where they share a
prefix. The draft sees a trie in a forward it makes anyway (the round's first, or a level's),
so copied tokens cost no draft step; where the draft's top token at a node's parent is the
node's token it *agrees*. Agreement is what tells a copy that goes on from one that stops: a
node the draft agrees with is worth what the draft's own top child would be (its calibrated
probability), one it does not as often as such nodes have been accepted in the request.

`LookupRates` learns, per request, how often lookup's tokens are accepted: overall (`gate`,
from the likeliest continuation at the root, every round, verified or not: `lookup.matches`)
and by agreement (`agreed`, `disagreed`, from every trie the walk reached). The decoder
(`decoders/tree.py`) owns the economics: how many nodes to show and keep under the measured
cost curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from specbranch.decoders.lookup import matches
from specbranch.estimators import AcceptanceRate
from specbranch.token_tree import TokenTree

LOOKUP_BRANCHES = 4  # continuations of different earlier occurrences shown at the root
GATE_DECAY = 0.5  # weight of the past in the gate, per round: copied spans start and end at once


@dataclass
class LookupTrie:
    """Prompt lookup's nodes as a round shows them to the draft, hanging under tree node
    `anchor` (-1: the root): `tokens`, `parents` (-1: the anchor; parents first), `first` the
    likeliest continuation they were built from; then what the draft made of them (`score`):
    whether its top token at the parent was the node's (`agrees`), its probability there (`q`)
    and the node's value (the probability the walk accepts it)."""

    anchor: int
    tokens: list[int]
    parents: list[int]
    first: list[int] = field(default_factory=list)
    agrees: list[bool] = field(default_factory=list)
    q: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def as_tree(self) -> TokenTree:
        return TokenTree(self.tokens, self.parents)


def build_trie(
    anchor: int, copies: list[list[int]], length: int, room: int, eos_ids: frozenset[int]
) -> LookupTrie:
    """The trie of `copies` (the likeliest first) under `anchor`: each cut to `length` tokens and
    after its first EOS, shared prefixes merged, at most `room` nodes."""
    trie, index = LookupTrie(anchor, [], [], copies[0] if copies else []), {}
    for copy in copies:
        node = -1
        for token in copy[:length]:
            if (node, token) not in index:
                if len(trie.tokens) == room:
                    break
                index[node, token] = len(trie.tokens)
                trie.tokens.append(token)
                trie.parents.append(node)
            node = index[node, token]
            if token in eos_ids:
                break
    return trie


def score(
    trie: LookupTrie, raw: torch.Tensor, anchor_value: float, accept: Callable[[float], float],
    disagreed: float,
) -> None:
    """Fill the trie's `agrees`, `q` and `values` from the draft's view of it.

    raw: [1 + L, V], the draft's distributions after the anchor and after each trie node.
    A node's value is its parent's (the anchor's: `anchor_value`) times `accept(q)` where the
    draft agrees (what its own top child would be worth: `Calibration.accept`), and times the
    larger of that and `disagreed` (how often such tokens have been accepted) where it does not.
    """
    rows = torch.tensor([1 + parent for parent in trie.parents], device=raw.device)  # [L]
    tokens = torch.tensor(trie.tokens, device=raw.device)  # [L]
    trie.agrees = (raw.argmax(-1)[rows] == tokens).tolist()
    trie.q = raw[rows, tokens].tolist()
    trie.values = []
    for j, (parent, agreed) in enumerate(zip(trie.parents, trie.agrees, strict=True)):
        base = trie.values[parent] if parent >= 0 else anchor_value
        factor = accept(trie.q[j])
        trie.values.append(base * (factor if agreed else max(disagreed, factor)))


def feed(
    tree: TokenTree, frontier: list[int], trie: LookupTrie, slots: dict[int, int], first: int
) -> tuple[list[int], list[int]]:
    """The nodes and parents of one draft forward's `Feed` over a level's new nodes and then a
    trie under one of them: the tokens, and each one's parent among the draft's tree nodes
    (`slots`: the draft's node id of every tree node fed before; the level's nodes take ids from
    `first` on, the trie's nodes the ids after them)."""
    own = {j: first + i for i, j in enumerate(frontier)}
    tokens = [tree.tokens[j] for j in frontier] + trie.tokens
    parents = [slots[tree.parents[j]] if tree.parents[j] >= 0 else -1 for j in frontier]
    after = first + len(frontier)
    parents += [own[trie.anchor] if parent < 0 else after + parent for parent in trie.parents]
    return tokens, parents


@dataclass
class LookupRates:
    """How often lookup's tokens are accepted in a request: `gate` overall (the likeliest
    continuation at the root against the committed tokens, every round: `lookup.matches`),
    `agreed` / `disagreed` for the tokens the draft saw, by whether its top token was theirs."""

    gate: AcceptanceRate = field(default_factory=lambda: AcceptanceRate(decay=GATE_DECAY))
    agreed: AcceptanceRate = field(default_factory=AcceptanceRate)
    disagreed: AcceptanceRate = field(default_factory=AcceptanceRate)

    def learn(self, shown: list[LookupTrie], path: list[int], committed: list[int]) -> None:
        """One round: `shown` the tries the draft saw (the root's first), `path` the accepted
        tree nodes, `committed` the round's tokens. For each trie whose anchor the walk accepted
        (or the root's), along the committed path through it every trie child of a node the
        path reached is a test, a hit where it is the committed token."""
        self.gate.learn(*matches(shown[0].first if shown else [], committed))
        tests, hits = {True: 0, False: 0}, {True: 0, False: 0}
        for trie in shown:
            if trie.anchor >= 0 and trie.anchor not in path:
                continue
            node = -1
            for token in committed[path.index(trie.anchor) + 1 if trie.anchor >= 0 else 0 :]:
                children = [j for j, parent in enumerate(trie.parents) if parent == node]
                for j in children:
                    tests[trie.agrees[j]] += 1
                    hits[trie.agrees[j]] += trie.tokens[j] == token
                node = next((j for j in children if trie.tokens[j] == token), None)
                if node is None:
                    break
        for agreed, rate in ((True, self.agreed), (False, self.disagreed)):
            if tests[agreed]:
                rate.learn(tests[agreed], hits[agreed])
