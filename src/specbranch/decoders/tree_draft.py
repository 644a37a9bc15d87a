"""The draft model as a tree's proposer: children for a level's frontier, and how many pay.

At a node the draft proposes k = max(1, floor(k_max * (1 - max q))) children (SpecBranch's
rule: branch where the draft is unsure): its top-k (deterministic) or k draws without
replacement from its processed q (sampled), excluding the tokens of the node's lookup children
(sampled ones are drawn from q without them). A lookup child among the draft's top k counts as
drafted. Children are kept best first, up to N nodes, by their parent's value times the
calibrated draft probability of their *rank* among the siblings (the i-th largest for the i-th
child): never by the drawn token itself, since keeping a sampled child because of what it is
would bias rule 4 (a drawn token's identity may shape only the levels below it). A parent keeps
a prefix of its children in draw order (rule 4 tests them in that order). EOS nodes get no
children. With measured cost curves a level keeps the best children only while each pays for
its verify slot (`costs.best_prefix`), and the tree grows another level only while a run of
further levels along its best node would pay for their draft steps (`worth_a_level`).
"""

from __future__ import annotations

import math

import torch

from specbranch.costs import best_prefix
from specbranch.decoders.tree_round import Candidate, TreeRound
from specbranch.policies import DraftPolicy
from specbranch.sampling import process_logits, sample_without_replacement, without


def propose(
    rnd: TreeRound, frontier: list[int], logits: torch.Tensor, raw: torch.Tensor, policy: DraftPolicy | None,
    eos_ids: frozenset[int],
) -> list[Candidate]:
    """Children for every frontier node from the draft's logits there and their softmax `raw`
    (both [len(frontier), V]), none below depth `rnd.reach`. A frontier node on a lookup chain
    already has its chain child: it counts as drafted when it is among the draft's top k, and
    the other children exclude its token."""
    request, tree = rnd.request, rnd.tree
    q = process_logits(logits, request.sampling) if request.sampled else raw  # [m, V]
    kept = policy.keep(raw) if policy is not None else [True] * len(frontier)
    vocab = raw.shape[-1]  # no node has more children than there are tokens
    ks = [min(vocab, max(1, math.floor(rnd.limits.k_max * (1.0 - m)))) for m in raw.max(-1).values.tolist()]
    tops = torch.topk(raw, max(ks), dim=-1).indices.tolist()  # [m, max k]
    links: dict[int, list[int]] = {}  # lookup's children of a node
    for c in range(len(tree)):
        if rnd.lookup[c]:
            links.setdefault(tree.parents[c], []).append(c)
    candidates = []
    for i, (node, k) in enumerate(zip(frontier, ks, strict=True)):
        chain = links.get(node, [])
        for c in chain:
            rnd.drafted[c] = tree.tokens[c] in tops[i][:k]
            k -= rnd.drafted[c]
        deep = node >= 0 and len(tree.path(node)) >= rnd.reach
        if k < 1 or deep or (node >= 0 and (tree.tokens[node] in eos_ids or not kept[i])):
            continue
        base = rnd.value[node] if node >= 0 else 1.0
        taken = [tree.tokens[c] for c in chain]
        candidates += _children(rnd, node, base, k, taken, raw[i], q[i], logits[i])
    return candidates


def _children(
    rnd: TreeRound, node: int, base: float, k: int, taken: list[int], raw: torch.Tensor, q: torch.Tensor,
    logits: torch.Tensor,
) -> list[Candidate]:
    """Up to k new children of `node` (value `base`), none of the tokens `taken` by its
    existing children: the draft's top-k, or k draws without replacement from its processed
    q ([V]) with `taken` removed; ranks from the k largest of raw ([V]) outside `taken`."""
    rest = raw.index_fill(0, torch.tensor(taken, device=raw.device), 0.0) if taken else raw  # [V]
    if rnd.request.sampled:
        tokens, rows = sample_without_replacement(without(q, taken), k, rnd.request.draft_gen)
    else:
        tokens = torch.topk(logits.masked_fill(rest == 0, float("-inf")), k).indices.tolist()
        tokens = [t for t in tokens if rest[t] > 0]
        rows = [None] * len(tokens)
    ranked = torch.topk(rest, len(tokens)).values.tolist()  # the k largest, for the ranks
    accept = rnd.request.calibration.accept
    return [
        Candidate(base * accept(ranked[order]), base * accept(own), own, node, order, t, row)
        for order, (t, row) in enumerate(zip(tokens, rows, strict=True))
        for own in (float(raw[t]),)
    ]


def select(rnd: TreeRound, candidates: list[Candidate]) -> list[Candidate]:
    """The children to add: best rank first, each parent keeping a prefix of its children in
    draw order, within the node budget and (with cost curves) as many as pay for their
    verify slots; returned in (parent, draw order) order."""
    chosen: list[Candidate] = []
    taken: set[tuple[int, int]] = set()
    for c in sorted(candidates, key=lambda c: -c.rank):
        if len(chosen) == rnd.limits.nodes - len(rnd.tree):
            break
        if c.order == 0 or (c.parent, c.order - 1) in taken:
            taken.add((c.parent, c.order))
            chosen.append(c)
    if rnd.limits.target is not None:
        values = [c.rank for c in chosen]
        chosen = chosen[: best_prefix(values, *rnd.so_far(), len(rnd.tree), rnd.limits.target)]
    return sorted(chosen, key=lambda c: (c.parent, c.order))


def worth_a_level(rnd: TreeRound, frontier: list[int], levels: int) -> bool:
    """Whether drafting on pays: the best frontier node's chain is guessed to go on being
    accepted, level after level, as often as tested nodes have been (`step_acceptance`),
    and some of the next `levels` levels (the first over the whole frontier, the rest one
    node wide) must raise the expected committed tokens per second after paying their
    draft steps and verify slots. Looking several levels ahead matters: on predictable text
    one level rarely pays for itself while a run of them does."""
    target, draft = rnd.limits.target, rnd.limits.draft
    if target is None or draft is None:
        return True
    (expected, seconds), n = rnd.so_far(), len(rnd.tree)
    value, step = max(rnd.value[j] for j in frontier), rnd.request.calibration.step_acceptance
    gain, drafting = 0.0, draft.seconds(len(frontier))
    for ahead in range(1, levels + 1):
        value *= step
        gain += value
        verify = target.seconds(1 + n + ahead) - target.seconds(1 + n)
        cost = drafting + (ahead - 1) * draft.seconds(1) + verify
        if (expected + gain) / (seconds + cost) > expected / seconds:
            return True
    return False
