"""Each verification rule in isolation reproduces the target distribution exactly.

Exact tests enumerate every random outcome with the module's own probability functions;
Monte Carlo tests run the samplers themselves and compare with a chi-square test.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from stats import chi_square_pvalue

from specbranch.verify import (
    residual,
    sampled_accept_probability,
    verify_branch_roots,
    verify_deterministic_block,
    verify_sampled_block,
    verify_sampled_roots,
)

V = 6


def random_dist(seed: int, peaked: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(V, generator=gen, dtype=torch.float64) * peaked).softmax(-1)


PAIRS = [(random_dist(s), random_dist(s + 100)) for s in range(5)] + [
    (random_dist(7), random_dist(7)),  # draft == target
    (
        torch.tensor([0.5, 0.5, 0, 0, 0, 0], dtype=torch.float64),
        torch.tensor([0, 0, 0.5, 0.5, 0, 0.0], dtype=torch.float64),
    ),
]


@pytest.mark.parametrize("p,q", PAIRS)
def test_rule1_exact(p, q):
    """Sum over x ~ q of accept(x) * [y == x] + reject(x) * residual(y) equals p."""
    out = torch.zeros(V, dtype=torch.float64)
    for x in range(V):
        if q[x] == 0:
            continue
        a = sampled_accept_probability(p, q, x)
        out[x] += q[x] * a
        out += q[x] * (1 - a) * residual(p, q)
    torch.testing.assert_close(out, p, atol=1e-12, rtol=0)


@pytest.mark.parametrize("p,q", PAIRS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_rule4_exact(p, q, k):
    """Recursive rejection over k roots drawn i.i.d. from q reproduces p."""
    out = torch.zeros(V, dtype=torch.float64)
    for roots in itertools.product(range(V), repeat=k):
        weight = float(torch.prod(q[list(roots)]))
        if weight == 0:
            continue
        r, reach = p, 1.0  # reach = probability that roots[:i] were all rejected
        for root in roots:
            a = sampled_accept_probability(r, q, root)
            out[root] += weight * reach * a
            reach *= 1 - a
            r = residual(r, q)
        out += weight * reach * r
    torch.testing.assert_close(out, p, atol=1e-12, rtol=0)


def test_rule3_hit_probability_is_root_mass():
    """Rule 3 keeps root c_i exactly with probability p_b(c_i); otherwise emits y ~ p_b."""
    p = random_dist(3)
    roots = [int(i) for i in torch.topk(random_dist(4), 2).indices]
    gen = torch.Generator().manual_seed(0)
    n = 20000
    counts = Counter()
    for _ in range(n):
        index, y = verify_branch_roots(p, roots, gen)
        assert (index is not None) == (y in roots)
        if index is not None:
            assert roots[index] == y
        counts[y] += 1
    assert chi_square_pvalue(counts, dict(enumerate(p.tolist())), n) > 1e-3


def _block_tables(seed: int):
    """Target rows p1, p2|x1, p3|x1x2 and draft rows q1, q2|x1 for a 2-token block."""
    s = seed * 1000
    p1, q1 = random_dist(s + 1), random_dist(s + 2)
    p2 = {x: random_dist(s + 10 + x) for x in range(V)}
    q2 = {x: random_dist(s + 20 + x) for x in range(V)}
    p3 = {(a, b): random_dist(s + 100 + a * V + b) for a in range(V) for b in range(V)}
    return p1, q1, p2, q2, p3


def _exact_pairs(p1, p2):
    return {(a, b): float(p1[a] * p2[a][b]) for a in range(V) for b in range(V)}


@pytest.mark.parametrize("sampled", [True, False], ids=["rule1", "rule2"])
def test_block_verification_first_two_tokens(sampled):
    """Over a 2-token block, the first two output tokens follow p1(a) p2(b|a).

    When the block is cut at a rejection the second token is drawn from the target, as the
    next round would.
    """
    p1, q1, p2, q2, p3 = _block_tables(1)
    draft_gen = torch.Generator().manual_seed(1)
    verify_gen = torch.Generator().manual_seed(2)
    n = 30000
    counts = Counter()
    for _ in range(n):
        if sampled:
            x1 = int(torch.multinomial(q1, 1, generator=draft_gen))
            x2 = int(torch.multinomial(q2[x1], 1, generator=draft_gen))
        else:
            x1 = int(q1.argmax())
            x2 = int(q2[x1].argmax())
        p = torch.stack([p1, p2[x1], p3[(x1, x2)]])
        if sampled:
            accepted, nxt = verify_sampled_block(p, torch.stack([q1, q2[x1]]), [x1, x2], verify_gen)
        else:
            accepted, nxt = verify_deterministic_block(p, [x1, x2], verify_gen)
        out = [x1, x2][:accepted] + [nxt]
        if len(out) == 1:
            out.append(int(torch.multinomial(p2[out[0]], 1, generator=verify_gen)))
        counts[tuple(out[:2])] += 1
    assert chi_square_pvalue(counts, _exact_pairs(p1, p2), n) > 1e-3


def test_rule4_sampler_matches_target():
    p, q = random_dist(11), random_dist(12)
    gen = torch.Generator().manual_seed(5)
    n = 20000
    counts = Counter()
    for _ in range(n):
        roots = [int(r) for r in torch.multinomial(q, 2, replacement=True, generator=gen)]
        _, token = verify_sampled_roots(p, q, roots, gen)
        counts[token] += 1
    assert chi_square_pvalue(counts, dict(enumerate(p.tolist())), n) > 1e-3


def test_greedy_verification_of_sampled_ratio_would_be_biased():
    """Sanity check of the test itself: verifying an argmax draft with the p/q ratio is biased."""
    p, q = random_dist(21), random_dist(22)
    x = int(q.argmax())
    q_onehot_ratio = sampled_accept_probability(p, q, x)  # the wrong rule for a greedy token
    biased = torch.zeros(V, dtype=torch.float64)
    biased[x] += q_onehot_ratio
    biased += (1 - q_onehot_ratio) * residual(p, q)
    assert not torch.allclose(biased, p, atol=1e-3)
