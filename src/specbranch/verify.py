"""Lossless verification rules 1-4 of ALGORITHM.md, as plain functions on distributions.

Terms:
- `p` rows are the target's processed distributions, `q` rows the draft's (same pipeline).
- A *block* is the run of drafted tokens verified by one target forward. `p` has one row more
  than the block: the row after the last drafted token gives the bonus token.
- Every accept/reject test draws a fresh uniform from `generator`; nothing is reused.

Each rule is split into its exact probabilities (`*_accept_probability`, `residual`), which the
tests enumerate, and a sampler that draws from them. `decide_round` applies them to one round
of the parallel methods (PEARL, SpecBranch).

A round's verdict also counts the tests it ran by *kind* (`TESTS`): the paths through the rules,
so that a test claiming to cover one can assert that it ran (`RoundStats.tests`,
`GenerationMetrics.verify_tests`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import torch

from specbranch.sampling import sample, uniform, without
from specbranch.token_tree import TokenTree

# Kinds of verification test (one draw or uniform each, except MIXED):
DETERMINISTIC = "deterministic"  # y ~ p compared with deterministic candidates (rules 2 and 3)
SAMPLED = "sampled"  # a sampled token against the row it was drawn from (rule 1; rule 4's first)
SIBLING = "sibling"  # rule 4: a later sampled candidate against the residual its siblings left
POINT_MASS = "point-mass"  # a lookup token by rule 1 with its point mass, in a block of sampled drafts
MIXED = "mixed"  # a tree node whose deterministic children y missed: rule 4 on p without them
TESTS = (DETERMINISTIC, SAMPLED, SIBLING, POINT_MASS, MIXED)


def block_tests(accepted: int, n: int, sampled: bool, point_masses: int = 0) -> Counter:
    """The tests a block of n tokens ran when `accepted` of them passed: every token up to the
    first rejection, by rule 1 (`sampled`; its first `point_masses` tokens lookup tokens with
    point-mass rows) or rule 2. The bonus token is a draw, not a test."""
    tested = min(n, accepted + 1)
    if not sampled:
        return +Counter({DETERMINISTIC: tested})
    masses = min(point_masses, tested)
    return +Counter({POINT_MASS: masses, SAMPLED: tested - masses})


def candidate_tests(hit: int | None, k: int, sampled: bool) -> Counter:
    """The tests of k candidates at a branch point or tree node, `hit` the accepted one's index
    (None: none): one draw (rule 3), or rule 4's uniforms up to the hit."""
    if not sampled:
        return Counter({DETERMINISTIC: 1})
    tested = k if hit is None else hit + 1
    return +Counter({SAMPLED: min(1, tested), SIBLING: tested - 1})


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(p - q, 0)): where a rejected sampled draft token sends the mass. [V] -> [V].

    When p == q the residual is empty; it is then never used (acceptance is certain), and p is
    returned so the result is still a distribution.
    """
    diff = (p - q).clamp_min(0.0)
    total = diff.sum()
    return diff / total if total > 0 else p


def sampled_accept_probability(p: torch.Tensor, q: torch.Tensor, token: int) -> float:
    """Rule 1: min(1, p(x) / q(x)) for a draft token x ~ q."""
    q_x = float(q[token])
    return 1.0 if q_x <= 0.0 else min(1.0, float(p[token]) / q_x)


def first_rejection_sampled(
    p: torch.Tensor, q: torch.Tensor, tokens: list[int], generator: torch.Generator
) -> tuple[int, int | None]:
    """Rule 1 over pending sampled draft tokens, without a bonus token.

    p: [>= n, V] target rows; q: [n, V] the draft rows the tokens were sampled from.
    Returns (accepted, correction): correction is the residual sample at the first rejection,
    or None when all n tokens are accepted.
    """
    for i, token in enumerate(tokens):
        if uniform(generator) >= sampled_accept_probability(p[i], q[i], token):
            return i, sample(residual(p[i], q[i]), generator)
    return len(tokens), None


def first_rejection_deterministic(
    p: torch.Tensor, tokens: list[int], generator: torch.Generator
) -> tuple[int, int | None]:
    """Rule 2 over pending deterministic draft tokens (e.g. draft argmax), without a bonus token.

    Draw y ~ p[i]; keep the token iff y equals it, else y is the correction. At temperature 0,
    y is the target argmax. Returns (accepted, correction or None when all are accepted).
    """
    for i, token in enumerate(tokens):
        y = sample(p[i], generator)
        if y != token:
            return i, y
    return len(tokens), None


def verify_sampled_block(
    p: torch.Tensor, q: torch.Tensor, tokens: list[int], generator: torch.Generator
) -> tuple[int, int]:
    """Rule 1 over a block of sampled draft tokens, plus the bonus token.

    p: [n+1, V] target rows; q: [n, V]. Returns (accepted, next_token): the first `accepted`
    tokens are kept and `next_token` follows them (the residual sample on a rejection, the
    bonus sample from p[n] when all pass).
    """
    accepted, correction = first_rejection_sampled(p, q, tokens, generator)
    return accepted, correction if correction is not None else sample(p[accepted], generator)


def verify_deterministic_block(
    p: torch.Tensor, tokens: list[int], generator: torch.Generator
) -> tuple[int, int]:
    """Rule 2 over a block of deterministic draft tokens, plus the bonus token.

    p: [n+1, V]; tokens: n ids. Returns (accepted, next_token).
    """
    accepted, correction = first_rejection_deterministic(p, tokens, generator)
    return accepted, correction if correction is not None else sample(p[accepted], generator)


def verify_branch_roots(
    p_b: torch.Tensor, roots: list[int], generator: torch.Generator
) -> tuple[int | None, int]:
    """Rule 3: k distinct deterministic branch roots at the branch point.

    p_b: [V] target row at the branch point. Draw y ~ p_b. Returns (index of the root equal to y,
    y), or (None, y) when y is not a root (then y is the correction token).
    Hit probability is sum_i p_b(roots[i]).
    """
    y = sample(p_b, generator)
    return (roots.index(y) if y in roots else None), y


def recursive_rejection(
    r: torch.Tensor, rows: list[torch.Tensor], tokens: list[int], generator: torch.Generator
) -> tuple[int | None, int]:
    """Rule 4: candidates tokens[i] drawn from rows[i] ([V] each), tested in order.

    For i = 1..k accept tokens[i] with probability min(1, r_i(x_i) / q_i(x_i)), where r_1 = r
    (the target's row) and r_{i+1} = residual(r_i, q_i); if every candidate fails, sample from
    r_{k+1}. Returns (index of the accepted candidate, its token) or (None, the token sampled
    from r_{k+1}). Roots drawn i.i.d. share one row; children drawn without replacement each
    have their own (the parent's q without their earlier siblings).
    """
    for i, (q, token) in enumerate(zip(rows, tokens, strict=True)):
        if uniform(generator) < sampled_accept_probability(r, q, token):
            return i, token
        r = residual(r, q)
    return None, sample(r, generator)


def verify_sampled_roots(
    p_b: torch.Tensor, q_b: torch.Tensor, roots: list[int], generator: torch.Generator
) -> tuple[int | None, int]:
    """Rule 4 over k roots drawn i.i.d. from q_b ([V]) at the branch point (p_b: [V]):
    `recursive_rejection` with q_b for every root."""
    return recursive_rejection(p_b, [q_b] * len(roots), roots, generator)


class RoundProposal(Protocol):
    """What `decide_round` reads of the draft's proposal (`specbranch.transport.messages.BranchProposal`).

    roots: the first token of each branch drafted from the branch point b;
    q_pending: [|U|, V] draft rows the pending tokens were sampled from; q_b: [V] the draft
    distribution at b (both None when drafting is deterministic).
    """

    @property
    def roots(self) -> list[int]: ...

    @property
    def q_pending(self) -> torch.Tensor | None: ...

    @property
    def q_b(self) -> torch.Tensor | None: ...


@dataclass(frozen=True)
class Verdict:
    """The target's decision on one round of the parallel methods (terms: `decide_round`).

    committed: the tokens appended to X this round: the accepted tokens of U, then either an
        accepted root or a recovered token (so always `pending_accepted` + 1 tokens).
    accepted: drafted tokens accepted: those of U, plus 1 when a root was accepted at b.
    verified: drafted positions checked: |U|, plus 1 (the roots at b) when `branched`.
    branched: whether all of U was accepted, so the roots at b were verified (False: the
        round rejected inside U, and every branch drafted from b is lost).
    hit: index of the accepted root (its branch continues as the next U); None on a miss or
        when the round did not reach b.
    tests: the tests the round ran, by kind (`TESTS`).
    """

    committed: list[int]
    accepted: int
    verified: int
    branched: bool
    hit: int | None
    tests: Counter = field(default_factory=Counter, compare=False)

    @property
    def pending_accepted(self) -> int:
        """How many tokens of U were accepted."""
        return self.accepted - (self.hit is not None)


def decide_round(
    p: torch.Tensor,
    pending: list[int],
    proposal: RoundProposal,
    sampled: bool,
    generator: torch.Generator,
) -> Verdict:
    """Verify one round: the pending block U, then (if all of U passes) the roots at b.

    p: [|U|+1, V] the target's processed rows: p[i] verifies U[i], p[-1] = p_b the roots.
    sampled: U and the roots were sampled from the draft (rules 1 and 4, with the proposal's q
    rows) rather than chosen deterministically (rules 2 and 3).

    Terms (as vLLM's rejection sampler names them):
    - an *accepted* token is a drafted token the rule keeps: a token of U, or a root at b;
    - a *recovered* token (the rules' "correction") replaces the first rejected drafted token:
      the residual sample (rules 1 and 4) or the target's own draw (rules 2 and 3). When a
      round rejects inside U, the recovered token ends it and the branches are dropped;
    - there is no *bonus* token: once all of U is accepted, the row p_b that would give it
      verifies the roots instead; an accepted root takes its place, a miss gives a recovered
      token. Either way the round commits exactly one token after the accepted part of U.

    Uniforms are drawn from `generator` in rule order (U front to back, then the roots), so a
    seed fixes the verdict.
    """
    if p.shape[0] != len(pending) + 1:
        raise ValueError(f"p has {p.shape[0]} rows for {len(pending)} pending tokens (need |U| + 1)")
    if sampled:
        accepted, correction = first_rejection_sampled(p, proposal.q_pending, pending, generator)
    else:
        accepted, correction = first_rejection_deterministic(p, pending, generator)
    tests = block_tests(accepted, len(pending), sampled)
    if correction is not None:
        return Verdict(pending[:accepted] + [correction], accepted, len(pending), False, None, tests)
    if sampled:
        hit, token = verify_sampled_roots(p[-1], proposal.q_b, proposal.roots, generator)
    else:
        hit, token = verify_branch_roots(p[-1], proposal.roots, generator)
    tests += candidate_tests(hit, len(proposal.roots), sampled)
    return Verdict(pending + [token], accepted + (hit is not None), len(pending) + 1, True, hit, tests)


@dataclass(frozen=True)
class TreeVerdict:
    """The target's walk through a draft tree.

    path: the accepted nodes, root's child first; committed: their tokens, then one more token:
    the recovered token where the walk stopped at a node none of whose children passed, or the
    bonus token from the row after a leaf; tests: the tests the walk ran, by kind (`TESTS`).
    """

    path: list[int]
    committed: list[int]
    tests: Counter = field(default_factory=Counter, compare=False)


def verify_tree(p: torch.Tensor, tree: TokenTree, generator: torch.Generator) -> TreeVerdict:
    """Walk a draft tree from the root with rule 3 (deterministic children), rule 4 (sampled
    children, each tested against the distribution it was drawn from), or both.

    p: [len(tree) + 1, V] the target's processed rows: p[0] after the root, p[1 + i] after
    node i (one target forward over every node, with a tree attention mask).
    At a node with deterministic children only: draw y ~ p_node; follow the child whose token
    is y, else commit y and stop. With sampled children x_1..x_k (x_i ~ q_i) only: r_1 = p_node;
    accept x_i with probability min(1, r_i(x_i) / q_i(x_i)), else r_{i+1} = residual(r_i, q_i);
    if none is accepted, commit a sample of r_{k+1} and stop. With both (a sampled tree with
    deterministic candidates D, e.g. lookup candidates): draw y ~ p_node and follow the child in
    D equal to y; otherwise run rule 4 over the sampled children from r_1 = p_node with D's
    tokens removed, renormalised (the target's distribution given y is not in D: y itself is
    not reused, rule 4 draws afresh). Every token t so has probability p_node(t). At a leaf:
    commit the bonus y ~ p_leaf. Each test draws a fresh uniform (or sample) from `generator`,
    in walk order.
    """
    if p.shape[0] != len(tree) + 1:
        raise ValueError(f"p has {p.shape[0]} rows for a tree of {len(tree)} nodes (need nodes + 1)")
    node, path, tests = -1, [], Counter()
    while True:
        children, row = tree.children(node), p[node + 1]
        fixed = [c for c in children if tree.q is None or tree.q[c] is None]  # deterministic
        drawn = [c for c in children if c not in fixed]  # sampled
        nxt, y = None, None
        if fixed or not drawn:
            y = sample(row, generator)
            nxt = next((c for c in fixed if tree.tokens[c] == y), None)
            tests[DETERMINISTIC] += bool(children)
        if nxt is None and drawn:
            tests[MIXED] += bool(fixed)
            nxt, y = _sampled_children(without(row, [tree.tokens[c] for c in fixed]), tree, drawn, generator)
            tests += candidate_tests(drawn.index(nxt) if nxt is not None else None, len(drawn), True)
        if nxt is None:
            return TreeVerdict(path, [tree.tokens[n] for n in path] + [y], +tests)
        node = nxt
        path.append(node)


def _sampled_children(
    r: torch.Tensor, tree: TokenTree, children: list[int], generator: torch.Generator
) -> tuple[int | None, int]:
    """Rule 4 over sampled children: (the accepted child or None, its token or the recovered one)."""
    rows, tokens = [tree.q[c] for c in children], [tree.tokens[c] for c in children]
    found, token = recursive_rejection(r, rows, tokens, generator)
    return (children[found] if found is not None else None), token
