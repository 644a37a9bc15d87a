"""`decide_round` on hand-made probability rows, in the style of vLLM's rejection-sampler tests.

One-hot rows make every draw certain, so each case (accept or reject inside U, hit or miss at
the branch point b) has exactly one verdict, for deterministic and sampled drafting alike.
Sampled rows are checked against exact probabilities computed here by hand: which root is hit,
and the committed tokens' joint distribution, which must be the target's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
import torch
from stats import chi_square_pvalue

from specbranch.verify import (
    Verdict,
    decide_round,
    first_rejection_deterministic,
    first_rejection_sampled,
    verify_branch_roots,
    verify_sampled_roots,
)

V = 5


@dataclass
class FakeProposal:
    """The fields of a proposal that `decide_round` reads."""

    roots: list[int]
    q_pending: torch.Tensor | None = None
    q_b: torch.Tensor | None = None


def one_hot(token: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(token), V).double()


def uniform_q(n: int) -> torch.Tensor:
    return torch.full((n, V), 1.0 / V, dtype=torch.float64)


def rows(*tokens: int) -> torch.Tensor:
    """[len(tokens), V]: target rows, one-hot on the given tokens (the last one is p_b)."""
    return torch.stack([one_hot(t) for t in tokens])


# (pending U, target argmax per row (U then b), roots, expected verdict)
CASES = {
    "all of U, first root hit": ([1, 2], (1, 2, 3), [3, 4], Verdict([1, 2, 3], 3, 3, True, 0)),
    "all of U, second root hit": ([1, 2], (1, 2, 3), [4, 3], Verdict([1, 2, 3], 3, 3, True, 1)),
    "all of U, miss": ([1, 2], (1, 2, 3), [0, 4], Verdict([1, 2, 3], 2, 3, True, None)),
    "rejected at U[0]": ([1, 2], (4, 2, 3), [3], Verdict([4], 0, 2, False, None)),
    "rejected at U[1]": ([1, 2], (1, 0, 3), [3], Verdict([1, 0], 1, 2, False, None)),
    "empty U, hit": ([], (2,), [0, 2], Verdict([2], 1, 1, True, 1)),
    "empty U, miss": ([], (2,), [0], Verdict([2], 0, 1, True, None)),
}


@pytest.mark.parametrize("sampled", [False, True], ids=["rules2-3", "rules1-4"])
@pytest.mark.parametrize("case", CASES)
def test_one_hot_rows_give_one_verdict(case, sampled):
    pending, argmax, roots, expected = CASES[case]
    proposal = FakeProposal(roots)
    if sampled:  # q uniform: accept where p is one-hot on the token, residual = p otherwise
        proposal.q_pending, proposal.q_b = uniform_q(len(pending)), uniform_q(1)[0]
    for seed in range(3):
        verdict = decide_round(rows(*argmax), pending, proposal, sampled, torch.Generator().manual_seed(seed))
        assert verdict == expected
        assert verdict.pending_accepted == expected.accepted - (expected.hit is not None)
        assert len(verdict.committed) == verdict.pending_accepted + 1


def test_p_must_have_one_row_more_than_u():
    with pytest.raises(ValueError, match="rows"):
        decide_round(rows(1, 2), [1, 2], FakeProposal([3]), False, torch.Generator())


@pytest.mark.parametrize("sampled", [False, True], ids=["rules2-3", "rules1-4"])
def test_uniforms_are_drawn_in_rule_order(sampled):
    """The verdict and the generator's state equal running the rules one after the other."""
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(4, V, generator=gen, dtype=torch.float64).softmax(-1)
    q = torch.rand(4, V, generator=gen, dtype=torch.float64).softmax(-1)
    pending, roots = [0, 1, 2], [3, 1]
    proposal = FakeProposal(roots, q[:3], q[3]) if sampled else FakeProposal(roots)
    for seed in range(50):
        got_gen, want_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        verdict = decide_round(p, pending, proposal, sampled, got_gen)
        if sampled:
            accepted, correction = first_rejection_sampled(p, q[:3], pending, want_gen)
        else:
            accepted, correction = first_rejection_deterministic(p, pending, want_gen)
        if correction is not None:
            assert verdict.committed == pending[:accepted] + [correction] and verdict.hit is None
        else:
            if sampled:
                hit, token = verify_sampled_roots(p[3], q[3], roots, want_gen)
            else:
                hit, token = verify_branch_roots(p[3], roots, want_gen)
            assert (verdict.committed, verdict.hit) == (pending + [token], hit)
        assert torch.equal(got_gen.get_state(), want_gen.get_state())


P_B = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64)
Q_B = torch.tensor([0.3, 0.4, 0.1, 0.05, 0.15], dtype=torch.float64)


def exact_root_outcomes(p: list[float], q: list[float], roots: list[int]) -> dict:
    """Rule 4 by hand: P(hit i) for each root, P(miss and token y) for each y."""
    outcomes, reach, r = {}, 1.0, list(p)
    for i, root in enumerate(roots):
        accept = 1.0 if q[root] == 0 else min(1.0, r[root] / q[root])
        outcomes[("hit", i)] = reach * accept
        reach *= 1.0 - accept
        diff = [max(a - b, 0.0) for a, b in zip(r, q, strict=True)]
        r = [d / sum(diff) for d in diff] if sum(diff) > 0 else r
    for y in range(V):
        outcomes[("miss", y)] = reach * r[y]
    return outcomes


def root_counts(roots: list[int], sampled: bool, n: int) -> Counter:
    proposal = FakeProposal(roots, torch.zeros(0, V, dtype=torch.float64), Q_B)
    gen = torch.Generator().manual_seed(1)
    counts = Counter()
    for _ in range(n):
        verdict = decide_round(P_B[None], [], proposal, sampled, gen)
        counts[("hit", verdict.hit) if verdict.hit is not None else ("miss", verdict.committed[0])] += 1
    return counts


# By hand: residual(P_B, Q_B) = (0.1, 0, 0.05, 0.05, 0) / 0.2 and the residual of that against
# Q_B is (0.2, 0, 0.15, 0.2, 0) / 0.55. Roots [1, 1]: root 1 is kept with min(1, 0.3 / 0.4) =
# 0.75, then has no residual mass: a miss (0.25) spreads over (4, 0, 3, 4, 0) / 11. Roots [4, 1]:
# root 4 is kept with 0.05 / 0.15 = 1/3, root 1 never: a miss (2/3) spreads the same way.
BY_HAND = {
    (1, 1): {("hit", 0): 0.75, ("miss", 0): 0.25 * 4 / 11, ("miss", 3): 0.25 * 4 / 11},
    (4, 1): {("hit", 0): 1 / 3, ("hit", 1): 0.0, ("miss", 2): 2 / 3 * 3 / 11},
}


@pytest.mark.parametrize("roots", BY_HAND)
def test_sampled_roots_are_hit_with_their_exact_probability(roots):
    expected = exact_root_outcomes(P_B.tolist(), Q_B.tolist(), list(roots))
    assert sum(expected.values()) == pytest.approx(1.0)
    for outcome, probability in BY_HAND[roots].items():
        assert expected[outcome] == pytest.approx(probability)
    n = 20000
    assert chi_square_pvalue(root_counts(list(roots), sampled=True, n=n), expected, n) > 1e-3


def test_deterministic_roots_are_hit_with_their_target_mass():
    roots = [1, 2]
    expected = {("hit", i): float(P_B[r]) for i, r in enumerate(roots)}
    expected |= {("miss", y): float(P_B[y]) for y in range(V) if y not in roots}
    n = 20000
    assert chi_square_pvalue(root_counts(roots, sampled=False, n=n), expected, n) > 1e-3


def test_sampled_round_commits_the_target_distribution():
    """U = [x] with x ~ q0, roots ~ q_b i.i.d.: the committed tokens follow the target exactly.

    Exact joint law, by hand: x is kept with probability min(q0(x), p0(x)) and the token at b
    then follows p_b; otherwise the round ends at a recovered token, with the remaining mass
    p0(a) - min(q0(a), p0(a)) on each a.
    """
    p0 = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=torch.float64)
    q0 = torch.tensor([0.3, 0.3, 0.1, 0.2, 0.1], dtype=torch.float64)
    expected = {}
    for a in range(V):
        kept = min(float(q0[a]), float(p0[a]))
        expected[(a, None)] = float(p0[a]) - kept
        for b in range(V):
            expected[(a, b)] = kept * float(P_B[b])
    draft_gen, verify_gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    n = 30000
    counts = Counter()
    for _ in range(n):
        x = int(torch.multinomial(q0, 1, generator=draft_gen))
        roots = torch.multinomial(Q_B, 2, replacement=True, generator=draft_gen).tolist()
        proposal = FakeProposal(roots, q0[None], Q_B)
        verdict = decide_round(torch.stack([p0, P_B]), [x], proposal, True, verify_gen)
        committed = verdict.committed + [None] * (2 - len(verdict.committed))
        counts[tuple(committed)] += 1
    assert chi_square_pvalue(counts, expected, n) > 1e-3
