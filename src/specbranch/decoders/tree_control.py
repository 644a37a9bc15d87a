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
- draft: what the request's draft rounds delivered, committed tokens over their seconds: their
  draft forwards' modelled seconds and a target forward over their mean node count
  (`DraftRounds`, decaying per draft round), with one optimistic round as the prior: the best
  chain of L draft tokens all accepted, (L + 1) / (L * D(1) + T(L + 1) + o). Before any
  evidence the draft is tried wherever it could pay at all; its own rounds then show whether it
  does. Where the draft's cache lacks b committed tokens (plain and lookup rounds leave it
  behind), its next round also pays D(b) - D(1) to catch up.

In a batch of m mates, every rate is the batch's with the mates priced as plain rounds (one
token each): (m + tokens) / (the round's own seconds + T'(n) + o), T'(n) the target's time for
the mates' tokens and its own (`costs.Beside`: T(m + n) where the backend runs them in one
forward, m T(1) + T(n) where it runs the feeds in turn). Width then costs what it adds to a
forward that is m wide already; judged against plain mates, a round speculates only where that
beats a batch of plain decoding (the mates' own width is theirs to justify the same way: pricing
against what they happen to spend would let everyone's tree make everyone else's look cheap).
A draft level is one forward over every drafting request's frontier (plans run in lockstep), so
with d drafting mates it costs its share, D((d + 1) n) / (d + 1) (`costs.Share`, applied by the
caller to `draft`): here d counts the mates that drafted in the last round; each further level of
the round is judged with those that rode in the level before (`engine._plan_together`).
Alone, m = d = 0 and the rates are the request's own.

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
    """What a request's draft rounds delivered: `rounds`, committed `tokens`, the modelled
    `seconds` of their draft forwards and their tree `nodes`, each decaying by DRAFT_DECAY per
    draft round. Their target forwards are priced when a round is chosen, at the width it would
    ride in (`choose`)."""

    rounds: float = 0.0
    tokens: float = 0.0
    seconds: float = 0.0
    nodes: float = 0.0

    def learn(self, tokens: int, seconds: float, nodes: int) -> None:
        self.rounds = DRAFT_DECAY * self.rounds + 1.0
        self.tokens = DRAFT_DECAY * self.tokens + tokens
        self.seconds = DRAFT_DECAY * self.seconds + seconds
        self.nodes = DRAFT_DECAY * self.nodes + nodes


def choose(
    target: Curve, draft: Curve, overhead: float, chain: list[int], gate: float, drafts: DraftRounds,
    depth: int, lookup: str, behind: int = 1, mates: int = 0,
) -> RoundChoice:
    """The round to run (module docstring). chain: the proposer's likeliest continuation (within
    the round's reach); gate: lookup's acceptance rate; drafts: the request's draft rounds so
    far; depth: the most draft levels; lookup: "off", "on" or "auto"; behind: committed tokens
    the draft's cache lacks; mates: the requests sharing the target forward, whose tokens
    `target` already counts (`costs.Beside`)."""
    wide = target

    def rate(tokens: float, seconds: float) -> float:
        return (mates + tokens) / (overhead + seconds)

    one = wide.seconds(1)
    best = RoundChoice(PLAIN, [], rate(1.0, one))
    if chain and lookup != "off":
        values = [gate ** (i + 1) for i in range(len(chain))]
        j = len(chain) if lookup == "on" else best_prefix(values, 1.0 + mates, one + overhead, 0, wide)
        found = rate(1.0 + sum(values[:j]), wide.seconds(1 + j))
        if j and found > best.rate:
            best = RoundChoice(LOOKUP, chain[:j], found)
    if depth < 1:
        return best
    # The prior: one round whose chain of L draft tokens is all accepted, at its best L.
    length = max(
        range(1, depth + 1),
        key=lambda n: rate(n + 1.0, n * draft.seconds(1) + wide.seconds(n + 1)),
    )
    rounds = drafts.rounds + 1.0
    mean_tokens = (drafts.tokens + length + 1.0) / rounds
    mean_seconds = (drafts.seconds + length * draft.seconds(1)) / rounds
    mean_nodes = (drafts.nodes + length) / rounds
    catch_up = draft.seconds(behind) - draft.seconds(1)
    found = rate(mean_tokens, mean_seconds + wide.seconds(1 + mean_nodes) + catch_up)
    return RoundChoice(DRAFT, [], found) if found > best.rate else best
