"""A serial SpecBranch round in progress (`TreeRound`), and what a request carries between rounds
(`TreeRequest`): the objects `decoders/tree.py` plans and settles.

The round holds the draft tree (`TokenTree`: tokens, parents, the rows sampled children were
drawn from) and beside it, per node: `value` (the calibrated probability that the walk accepts
the node: its path's product), `q` (the draft's probability of its token), whether prompt
lookup proposed it (`lookup`) and whether the draft did (`drafted`); `spent`, the modelled
seconds of the draft forwards so far (plus the request's unmodelled overhead); `slots`, the
draft's node id of every tree node it was fed; `shown`, the lookup tries the draft saw (the
root's first); `mode`, what the controller chose (`tree_control`), and `chain`, the proposer's
likeliest continuation it weighed; `draft_timings`, (tokens fed, seconds) of each draft forward.
Planning fills it; `feed` is the target forward it ends with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from specbranch.backends.base import Feed
from specbranch.costs import Curve
from specbranch.decoders.base import PlanClock, Request
from specbranch.decoders.tree_control import DraftRounds
from specbranch.decoders.tree_lookup import LookupRates, LookupTrie
from specbranch.estimators import Calibration
from specbranch.metrics import BRANCH, DRAFT, LOOKUP
from specbranch.token_tree import TokenTree


@dataclass(frozen=True)
class TreeLimits:
    """How large a tree may grow: `nodes` drafted tokens in all (N), `depth` levels (D), at most
    `k_max` children per node. `target` / `draft`: measured cost curves (target forward over n
    tokens, draft level n nodes wide); with them each round's tree is sized by the throughput
    model within N and D, without them it is filled to N and D. `correct`: whether greedy rounds
    correct the curves from their timed forwards (`costs.Placement.correct`)."""

    nodes: int
    depth: int
    k_max: int
    target: Curve | None = None
    draft: Curve | None = None
    correct: bool = True


@dataclass
class TreeRequest(Request):
    """A request's state between tree rounds: whether its children are sampled (`sampled`),
    what it has taught (`calibration`; `lookup_rates`; `draft_rounds`, what its draft rounds
    delivered, for the round controller; `overhead`, the running mean of a round's seconds beyond
    its timed forwards; `since_plain`, rounds since its last plain one) and its counters for the
    metrics."""

    sampled: bool = False
    calibration: Calibration = field(default_factory=Calibration)
    lookup_rates: LookupRates = field(default_factory=LookupRates)
    draft_rounds: DraftRounds = field(default_factory=DraftRounds)
    overhead: float = 0.0
    since_plain: int = 0
    rounds: int = 0
    nodes_total: int = 0
    depth_total: int = 0
    depth_tested: list[int] = field(default_factory=list)
    depth_accepted: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    """A child proposed for the tree: `rank` (what selection reads: the parent's value times the
    calibrated acceptance of this child's *rank* among its siblings), `value` and `q` (its value
    and the draft's probability of its own token: they shape only the levels below it), parent
    node, draw order among its siblings, token, and (sampled) the distribution it was drawn
    from."""

    rank: float
    value: float
    q: float
    parent: int
    order: int
    token: int
    row: torch.Tensor | None


@dataclass
class TreeRound:
    """A tree round in progress (module docstring); `reach`: no node deeper than this;
    `clock`: the planning's own time, `planned`: the seconds it took."""

    request: TreeRequest
    limits: TreeLimits
    reach: int
    clock: PlanClock
    tree: TokenTree = field(init=False)
    value: list[float] = field(default_factory=list)
    q: list[float] = field(default_factory=list)
    lookup: list[bool] = field(default_factory=list)
    drafted: list[bool] = field(default_factory=list)
    spent: float = 0.0
    slots: dict[int, int] = field(default_factory=dict)
    shown: list[LookupTrie] = field(default_factory=list)
    modelled: float = 0.0
    planned: float = 0.0
    mode: str = ""
    chain: list[int] = field(default_factory=list)
    draft_timings: list[tuple[int, float]] = field(default_factory=list)
    feed: Feed | None = None

    def __post_init__(self) -> None:
        self.tree = TokenTree([], [], [] if self.request.sampled else None)
        # What a round costs beyond its forwards (sampling, verification, the committed context
        # the probe's short one lacks) counts as spent: it makes every drafted token cheaper.
        self.spent = self.request.overhead

    def append(self, c: Candidate, drafted: bool, lookup: bool) -> int:
        """Append one node to the tree and its numbers; its index."""
        self.tree.tokens.append(c.token)
        self.tree.parents.append(c.parent)
        if self.tree.q is not None:
            self.tree.q.append(c.row)
        self.value.append(c.value)
        self.q.append(c.q)
        self.drafted.append(drafted)
        self.lookup.append(lookup)
        return len(self.tree) - 1

    def so_far(self) -> tuple[float, float]:
        """The tree's expected committed tokens (the bonus or correction plus its nodes' values,
        plus a token per batch mate) and its modelled seconds (the overhead, draft forwards so far,
        and a target forward over it, beside the mates' width: `TreeRequest`'s limits)."""
        target, mates = self.limits.target, self.request.mates
        forward = target.seconds(1 + len(self.tree)) if target else 0.0
        return 1.0 + mates + sum(self.value), self.spent + forward

    def origins(self, path: list[int]) -> list[str]:
        """Where the accepted path's tokens came from: prompt lookup (a node only lookup
        proposed), a branch (below a drafted node that is not its parent's first drafted child,
        the draft's likeliest), or the draft's likeliest line."""
        origins, off_line = [], False
        for node in path:
            first = next((c for c in self.tree.children(self.tree.parents[node]) if self.drafted[c]), None)
            off_line = off_line or (self.drafted[node] and node != first)
            origins.append(BRANCH if off_line else DRAFT if self.drafted[node] else LOOKUP)
        return origins
