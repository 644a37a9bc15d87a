"""The round controller of serial SpecBranch: what a round spends, decided before it spends.

A round can be (`MODES`):

- plain: the target alone over the last committed token, one token: what plain decoding does;
- lookup: the proposer's likeliest continuation verified by the target, no draft forward at
  all (copied tokens cost only their verify slots);
- draft: a draft tree, with the proposer's continuations shown to the draft in its forward
  (`decoders/tree.py`, steps 0-1), sized there by the same curves.

Each is priced in expected committed tokens per second under the backend's cost curves (the
target over n tokens T(n), a draft level D(n)) plus the round's measured unmodelled seconds o:

- plain: 1 / (T(1) + o);
- lookup: (1 + sum of a^i over the first j candidates) / (T(1 + j) + o), a the gate's acceptance
  rate in the request and j the count that maximises it (`costs.best_prefix`; all of them with
  `--lookup on`);
- draft: what the request's draft rounds delivered, committed tokens over their modelled
  seconds (`DraftRounds`, decaying per draft round), with one optimistic round as the prior: the
  best chain of L draft tokens all accepted, (L + 1) / (L * D(1) + T(L + 1) + o). Before any
  evidence the draft is tried wherever it could pay at all; its own rounds then show whether it
  does. Where the draft's cache lacks b committed tokens (plain and lookup rounds leave it
  behind), its next round also pays D(b) - D(1) to catch up.

The round takes the highest rate; ties go to the cheaper mode (plain, then lookup). So where
neither the draft nor copying pays (a draft that costs half a target step, width that is far
from free), rounds are plain decoding and cost what it costs. Every input is known before
verification, and at sampled decoding the curves are the probed ones: a seed fixes the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from specbranch.costs import Curve, best_prefix

PLAIN, LOOKUP, DRAFT = "plain", "lookup", "draft"
MODES = (PLAIN, LOOKUP, DRAFT)
DRAFT_DECAY = 0.9  # weight of the past in `DraftRounds`, per draft round


@dataclass(frozen=True)
class RoundChoice:
    """A round's mode, the lookup candidates a lookup round verifies, and its predicted rate."""

    mode: str
    candidates: list[int]
    rate: float


@dataclass
class DraftRounds:
    """What a request's draft rounds delivered: `rounds`, committed `tokens` and modelled
    `seconds` (draft forwards, the target forward, overhead), each decaying by DRAFT_DECAY per
    draft round."""

    rounds: float = 0.0
    tokens: float = 0.0
    seconds: float = 0.0

    def learn(self, tokens: int, seconds: float) -> None:
        self.rounds = DRAFT_DECAY * self.rounds + 1.0
        self.tokens = DRAFT_DECAY * self.tokens + tokens
        self.seconds = DRAFT_DECAY * self.seconds + seconds


def choose(
    target: Curve, draft: Curve, overhead: float, chain: list[int], gate: float, drafts: DraftRounds,
    depth: int, lookup: str, behind: int = 1,
) -> RoundChoice:
    """The round to run (module docstring). chain: the proposer's likeliest continuation (within
    the round's reach); gate: lookup's acceptance rate; drafts: the request's draft rounds so
    far; depth: the most draft levels; lookup: "off", "on" or "auto"; behind: committed tokens
    the draft's cache lacks."""
    one = target.seconds(1) + overhead
    best = RoundChoice(PLAIN, [], 1.0 / one)
    if chain and lookup != "off":
        values = [gate ** (i + 1) for i in range(len(chain))]
        j = len(chain) if lookup == "on" else best_prefix(values, 1.0, one, 0, target)
        rate = (1.0 + sum(values[:j])) / (target.seconds(1 + j) + overhead)
        if j and rate > best.rate:
            best = RoundChoice(LOOKUP, chain[:j], rate)
    if depth < 1:
        return best
    # The prior: one round whose chain of L draft tokens is all accepted, at its best L.
    prior = max(
        ((length + 1.0, length * draft.seconds(1) + target.seconds(length + 1) + overhead)
         for length in range(1, depth + 1)),
        key=lambda round_: round_[0] / round_[1],
    )
    mean_tokens = (drafts.tokens + prior[0]) / (drafts.rounds + 1.0)
    mean_seconds = (drafts.seconds + prior[1]) / (drafts.rounds + 1.0)
    rate = mean_tokens / (mean_seconds + draft.seconds(behind) - draft.seconds(1))
    return RoundChoice(DRAFT, [], rate) if rate > best.rate else best
