"""A draft token tree: what a tree drafter proposes and `verify.verify_tree` walks.

The tree hangs off the *root*: the position right after the last committed token. Node i holds
`tokens[i]`; `parents[i]` is its parent node (-1: a child of the root); parents come before
their children, so a node's depth is one more than its parent's. A node's children are the
alternatives the draft proposes for the position after it (the root's children: for the first
new position).

Children are either *deterministic* (the draft's top-k at their parent, or candidates copied
from the context by prompt lookup; verified with rule 3) or *sampled* (drawn from the draft's
distribution at their parent one after the other without replacement; verified with rule 4,
generalised). For sampled children `q[i]` is the distribution node i was drawn from: the
parent's processed draft distribution with its earlier siblings removed and the rest
renormalised (`sampling.sample_without_replacement`). q is None for a tree of deterministic
children only; in a tree with sampled children, `q[i]` is None for a deterministic child (a
node may have both kinds: `verify.verify_tree` says how they are tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenTree:
    """Nodes of a draft tree (see the module docstring); q is None for deterministic children."""

    tokens: list[int]
    parents: list[int]
    q: list[torch.Tensor | None] | None = None

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.parents) or any(p >= i for i, p in enumerate(self.parents)):
            raise ValueError("parents must list, for each node, an earlier node or -1")

    def __len__(self) -> int:
        return len(self.tokens)

    def children(self, node: int) -> list[int]:
        """The children of `node` (-1: the root), in the order they were drafted."""
        return [i for i, parent in enumerate(self.parents) if parent == node]

    def path(self, node: int) -> list[int]:
        """The nodes from the root's child down to `node` (empty for the root, -1)."""
        nodes = []
        while node >= 0:
            nodes.append(node)
            node = self.parents[node]
        return nodes[::-1]
