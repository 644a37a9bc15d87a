"""The round controller of serial SpecBranch: what a round spends, decided before it spends.

A round can be (`MODES`):

- plain: the target alone over the last committed token, one token: what plain decoding does;
- lookup: the proposer's likeliest continuation verified by the target, no draft forward at
  all (copied tokens cost only their verify slots);
- draft: a draft tree, with the proposer's continuations shown to the draft in its forward
  (`decoders/tree.py`, steps 0-1), sized there by the same curves.

Each is priced in expected committed tokens per second under the backend's cost curves (the
target over n tokens T(n), a draft level D(n)) plus the round's measured unmodelled seconds:

- plain: 1 / T(1);
- lookup: (1 + sum of a^i over the first j candidates) / T(1 + j), a the gate's acceptance rate
  in the request and j the count that maximises it (`costs.best_prefix`; all of them with
  `--lookup on`);
- draft: the best chain of L draft tokens each accepted with probability alpha, beside the j
  lookup candidates (a draft round verifies both; it is credited with the better of the two):
  max(E(L), lookup's) / (L * D(1) + T(1 + L + j)), alpha the *optimistic* rate
  (hits + 1) / (tests + 1) of the request's tests of drafted nodes (`Calibration.step`): 1
  before any evidence, so the draft is tried wherever it could pay at all, and dropped once its
  acceptance shows it cannot.

The round takes the highest rate; ties go to the cheaper mode (plain, then lookup). So where
neither the draft nor copying pays (a draft that costs half a target step, width that is far
from free), rounds are plain decoding and cost what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from specbranch.costs import Curve, best_prefix, chain_tokens
from specbranch.estimators import AcceptanceRate

PLAIN, LOOKUP, DRAFT = "plain", "lookup", "draft"
MODES = (PLAIN, LOOKUP, DRAFT)


@dataclass(frozen=True)
class RoundChoice:
    """A round's mode, the lookup candidates a lookup round verifies, and its predicted rate."""

    mode: str
    candidates: list[int]
    rate: float


def optimistic(rate: AcceptanceRate) -> float:
    """(hits + 1) / (tests + 1): 1 before any test, the observed rate after many."""
    return min(1.0, (rate.hits + 1.0) / (rate.tests + 1.0))


def choose(
    target: Curve, draft: Curve, overhead: float, chain: list[int], gate: float, tested: AcceptanceRate,
    depth: int, lookup: str,
) -> RoundChoice:
    """The round to run (module docstring). chain: the proposer's likeliest continuation (within
    the round's reach); gate: lookup's acceptance rate; tested: the request's tests of drafted
    nodes; depth: the most draft levels; lookup: "off", "on" or "auto"."""
    one = target.seconds(1) + overhead
    best = RoundChoice(PLAIN, [], 1.0 / one)
    j, copied = 0, 1.0  # the lookup candidates worth verifying, and a lookup round's expected tokens
    if chain and lookup != "off":
        values = [gate ** (i + 1) for i in range(len(chain))]
        j = len(chain) if lookup == "on" else best_prefix(values, 1.0, one, 0, target)
        copied = 1.0 + sum(values[:j])
        rate = copied / (target.seconds(1 + j) + overhead)
        if j and rate > best.rate:
            best = RoundChoice(LOOKUP, chain[:j], rate)
    alpha = optimistic(tested)
    for length in range(1, depth + 1):  # the draft's chain beside those candidates
        seconds = length * draft.seconds(1) + target.seconds(1 + length + j) + overhead
        rate = max(chain_tokens(alpha, length), copied) / seconds
        if rate > best.rate:
            best = RoundChoice(DRAFT, [], rate)
    return best
