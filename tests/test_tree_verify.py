"""Tree verification (`verify.verify_tree`) is exact: enumerated on hand-made trees.

Target and draft are tables of hand-made distributions over a 3-token vocabulary, one row per
prefix (some rows with zeros, as top-k / top-p leave them). A draft tree of depth 2 or 3 is
built from the draft table (deterministic children: its top-k; sampled children: drawn without
replacement), the target walks it (`verify_tree`), and generation continues autoregressively
from the target table until L tokens exist. The enumerating oracle (`oracle.py`) runs this
over every random outcome (the tree's children included), so the committed tokens' exact
distribution is compared with the target table's own: for the first token and the first two
and three tokens, with no tolerance beyond float rounding. Every uniform decides one test.
"""

from __future__ import annotations

import pytest
import torch
from oracle import Enumerator, max_difference

from specbranch.sampling import sample, sample_without_replacement
from specbranch.token_tree import TokenTree
from specbranch.verify import verify_tree

V = 3


def table(seed: int, zeros: bool) -> dict[tuple, torch.Tensor]:
    """A distribution per prefix of up to 4 tokens; with `zeros`, some rows leave out a token."""
    gen = torch.Generator().manual_seed(seed)
    rows = {}
    prefixes = [()]
    for _ in range(5):
        for prefix in prefixes:
            row = torch.rand(V, generator=gen, dtype=torch.float64) + 0.05
            if zeros and len(prefix) % 2 == 0:
                row[(len(prefix) + sum(prefix)) % V] = 0.0
            rows[prefix] = (row / row.sum()).float()
        prefixes = [prefix + (t,) for prefix in prefixes for t in range(V)]
    return rows


P, Q = table(1, zeros=True), table(2, zeros=True)


def build(widths: list[int], sampled: bool, rng) -> TokenTree:
    """A tree with `widths[d]` children per node at depth d, drafted from Q."""
    tokens, parents, rows, frontier = [], [], [], [-1]
    for width in widths:
        grown = []
        for node in frontier:
            q = Q[prefix_of(tokens, parents, node)]
            if sampled:
                chosen, drawn_from = sample_without_replacement(q, width, rng)
            else:
                chosen = [int(t) for t in torch.topk(q, width).indices if q[t] > 0]
                drawn_from = [None] * len(chosen)
            for token, row in zip(chosen, drawn_from, strict=True):
                tokens.append(token)
                parents.append(node)
                rows.append(row)
                grown.append(len(tokens) - 1)
        frontier = grown
    return TokenTree(tokens, parents, rows if sampled else None)


def prefix_of(tokens: list[int], parents: list[int], node: int) -> tuple:
    path = []
    while node >= 0:
        path.append(tokens[node])
        node = parents[node]
    return tuple(reversed(path))


def graft(tree: TokenTree, chain: list[int]) -> None:
    """Hang a fixed chain of deterministic candidates (as prompt lookup proposes) off the root."""
    node = -1
    for token in chain:
        tree.tokens.append(token)
        tree.parents.append(node)
        if tree.q is not None:
            tree.q.append(None)
        node = len(tree) - 1


def generate(widths: list[int], sampled: bool, length: int, rng, chain: tuple = ()) -> tuple:
    """Draft a tree (plus a deterministic `chain` from the root), verify it, then continue from
    the target table up to `length` tokens."""
    tree = build(widths, sampled, rng)
    graft(tree, list(chain))
    p = torch.stack([P[()]] + [P[prefix_of(tree.tokens, tree.parents, i)] for i in range(len(tree))])
    out = verify_tree(p, tree, rng).committed
    while len(out) < length:
        out.append(sample(P[tuple(out)], rng))
    return tuple(out[:length])


def target(length: int) -> dict:
    out = {(): 1.0}
    for _ in range(length):
        out = {k + (t,): w * float(P[k][t]) for k, w in out.items() for t in range(V) if P[k][t] > 0}
    return out


SHAPES = {"2x2": [2, 2], "3x2x1": [3, 2, 1], "1x2x2": [1, 2, 2], "3": [3]}


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("sampled", [False, True], ids=["deterministic", "sampled"])
@pytest.mark.parametrize("shape", SHAPES)
def test_tree_walk_commits_exactly_the_target_distribution(shape, sampled, length):
    oracle = Enumerator()
    got = oracle.distribution(lambda: generate(SHAPES[shape], sampled, length, oracle))
    assert max_difference(got, target(length)) < 1e-6
    assert oracle.reused == 0 and oracle.tests == oracle.uniforms


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("chain", [(0,), (1, 2), (2, 2, 0)])
@pytest.mark.parametrize("shape", ["2x2", "1x2x2"])
def test_deterministic_candidates_beside_sampled_children_stay_exact(shape, chain, length):
    """A node with both kinds: y ~ p picks a deterministic child, else rule 4 runs on p without
    the deterministic tokens (the chain may repeat a sampled sibling's token)."""
    oracle = Enumerator()
    got = oracle.distribution(lambda: generate(SHAPES[shape], True, length, oracle, chain))
    assert max_difference(got, target(length)) < 1e-6
    assert oracle.reused == 0


def test_a_walk_follows_matching_children_and_stops_at_the_first_miss():
    tree = TokenTree([0, 1, 2, 0], [-1, -1, 0, 2])  # root -> {0, 1}; 0 -> 2 -> 0
    one_hot = torch.eye(V)
    p = one_hot[[0, 2, 0, 0, 1]]  # root picks 0, then after node 0 picks 2, after node 2 picks 0
    verdict = verify_tree(p, tree, torch.Generator())
    assert (verdict.path, verdict.committed) == ([0, 2, 3], [0, 2, 0, 1])  # leaf: bonus 1
    p = one_hot[[1, 2, 0, 0, 1]]  # root picks 1: node 1 (a leaf), bonus from its row
    assert verify_tree(p, tree, torch.Generator()).committed == [1, 0]
    p = one_hot[[0, 1, 0, 0, 1]]  # after node 0 the target picks 1: no such child
    assert verify_tree(p, tree, torch.Generator()).committed == [0, 1]


def test_sampling_without_replacement_gives_distinct_tokens_and_their_rows():
    q = torch.tensor([0.5, 0.0, 0.3, 0.2])
    tokens, rows = sample_without_replacement(q, 5, torch.Generator().manual_seed(0))
    assert sorted(tokens) == [0, 2, 3]  # only the nonzero ones, each once
    for i, row in enumerate(rows):
        assert torch.all(row[tokens[:i]] == 0) and abs(float(row.sum()) - 1) < 1e-6
