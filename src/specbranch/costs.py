"""Cost curves and the throughput model that sizes trees and picks SpecBranch's execution.

A *cost curve* gives the seconds of one forward over n new tokens (the target verifying n
tokens, or the draft stepping a tree level n nodes wide), measured on the actual hardware by
`specbranch.probe` at a few n and interpolated linearly between them (beyond the last point:
the last segment's slope). Nothing here measures or loads a model: these are plain numbers,
so the decoders and the unit tests use them directly.

Throughput model (ALGORITHM.md, "Tree execution: budget from measurement"): a round commits
1 + (expected accepted draft tokens) tokens, and the expected accepted tokens of a tree are
the sum over its nodes of the probability that the walk reaches and accepts them. With a
per-token acceptance alpha, a chain of L drafted tokens commits E(L) = (1 - alpha^(L+1)) /
(1 - alpha) tokens per round. Serial execution spends draft levels plus one target forward per
round; parallel execution overlaps them, so a round costs the slower of the two sides, each on
its share of the device.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Protocol

# Per-token acceptances the execution choice is judged over, before any generation has been
# observed: the mode chosen must be the faster one on average over this plausible range
# (prose to code), not at one guessed value.
ACCEPTANCE_RANGE = (0.5, 0.7, 0.9)


class Curve(Protocol):
    """Seconds of one forward over n new tokens (`CostCurve`, `CorrectedCurve`)."""

    def seconds(self, n: float) -> float: ...


@dataclass(frozen=True)
class Beside:
    """The seconds of a batched round's target work as one request sees it, beside `mates` plain
    rounds (one token each): on a backend that batches (`shared`), one forward over mates + n
    tokens; on one that runs the feeds in turn, the mates' one-token forwards and then its own."""

    curve: Curve
    mates: int
    shared: bool = True

    def seconds(self, n: float) -> float:
        if self.shared:
            return self.curve.seconds(self.mates + n)
        return self.mates * self.curve.seconds(1) + self.curve.seconds(n)


@dataclass(frozen=True)
class Share:
    """One request's share of a forward that `sharers` requests ride in with feeds as wide as
    its own: curve(sharers * n) / sharers. A draft level when drafting requests plan in lockstep
    (`engine.run_rounds`: one draft forward per level over all their frontiers)."""

    curve: Curve
    sharers: int

    def seconds(self, n: float) -> float:
        return self.curve.seconds(self.sharers * n) / self.sharers


@dataclass(frozen=True)
class CostCurve:
    """Seconds of one forward over n new tokens: `points` are measured (n, seconds), n rising."""

    points: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        ns = [n for n, _ in self.points]
        if not ns or ns != sorted(set(ns)) or ns[0] < 1 or any(s <= 0 for _, s in self.points):
            raise ValueError(f"a cost curve needs rising n >= 1 and positive times, got {self.points}")

    def seconds(self, n: float) -> float:
        """Interpolated seconds for n tokens (n <= the first point: that point's time)."""
        ns = [p[0] for p in self.points]
        if n <= ns[0] or len(ns) == 1:
            return self.points[0][1]
        i = min(bisect.bisect_left(ns, n), len(ns) - 1)
        (n0, s0), (n1, s1) = self.points[i - 1], self.points[i]
        return s0 + (s1 - s0) * (n - n0) / (n1 - n0)

    def to_list(self) -> list[list[float]]:
        return [[n, s] for n, s in self.points]

    @classmethod
    def from_list(cls, points: list[list[float]]) -> CostCurve:
        return cls(tuple((int(n), float(s)) for n, s in points))


CORRECTION_DECAY = 0.8  # weight of the past in a curve's online correction, per timed forward


@dataclass
class CorrectedCurve:
    """A probed cost curve corrected online by the forwards a decoder really times.

    The probe times one forward in isolation after a short context; a real round's forward
    costs more or less (its context, the mask, the logits it returns, a machine that was busy
    while the probe ran). `ratios` holds, per probe point, a decaying mean of measured over
    probed seconds; `seconds(n)` is the probe's time at n times the ratio interpolated at n.
    `observe(n, seconds)` moves the two probe points around n toward the measured ratio, each
    by its share of the distance (1 - CORRECTION_DECAY at a probe point); wider forwards are
    ignored."""

    probe: CostCurve
    ratios: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.ratios = [1.0] * len(self.probe.points)

    def _around(self, n: float) -> list[tuple[int, float]]:
        """The probe points around n with their interpolation weights."""
        ns = [point[0] for point in self.probe.points]
        if n <= ns[0]:
            return [(0, 1.0)]
        if n >= ns[-1]:
            return [(len(ns) - 1, 1.0)]
        i = bisect.bisect_left(ns, n)
        w = (n - ns[i - 1]) / (ns[i] - ns[i - 1])
        return [(i - 1, 1.0 - w), (i, w)]

    def seconds(self, n: float) -> float:
        return self.probe.seconds(n) * sum(self.ratios[j] * w for j, w in self._around(n))

    def observe(self, n: float, seconds: float) -> None:
        """One forward over n tokens that took `seconds`. A forward wider than the probe's widest
        (a prompt's prefill) is not a round's: its per-token cost is another regime, so it
        corrects nothing."""
        if n > self.probe.points[-1][0]:
            return
        ratio = seconds / self.probe.seconds(n)
        for j, w in self._around(n):
            self.ratios[j] += (1.0 - CORRECTION_DECAY) * w * (ratio - self.ratios[j])


def chain_tokens(alpha: float, length: int) -> float:
    """Expected tokens one round commits when it drafts a chain of `length` tokens, each
    accepted with probability alpha given its predecessors were: E(L) = sum_{i=0..L} alpha^i."""
    return sum(alpha**i for i in range(length + 1))


@dataclass(frozen=True)
class Placement:
    """The measured costs of one machine and model pair.

    target / draft: each model alone with all of the device (the serial modes).
    target_shared / draft_shared: each model on its share while the other runs (the parallel
    mode; on separate devices these equal the full curves).
    correct: whether the forwards a decoder times may correct these curves online
    (`CorrectedCurve`); False for curves given in place of measured ones (the tests' synthetic
    economics, which real timings of tiny models would overturn).
    """

    target: CostCurve
    draft: CostCurve
    target_shared: CostCurve
    draft_shared: CostCurve
    correct: bool = True


def serial_rate(costs: Placement, alpha: float, max_length: int) -> tuple[float, int]:
    """Predicted tokens/s of serial execution and its best chain length: drafting L tokens (one
    draft step each) then verifying L + 1 in one target forward. A tree does at least this well
    (a chain is a tree)."""
    best = max(
        (chain_tokens(alpha, n) / (n * costs.draft.seconds(1) + costs.target.seconds(n + 1)), n)
        for n in range(1, max_length + 1)
    )
    return best


def parallel_rate(costs: Placement, alpha: float, max_length: int) -> tuple[float, int]:
    """Predicted tokens/s of parallel execution and its best branch length: a round drafts L
    tokens on the draft's share while the target verifies on its share, so it costs the slower
    of the two; and a rejection (probability 1 - alpha^L) throws away the branch drafted
    meanwhile, so the next one is drafted while the target waits (counted in full: the
    branches that hedge a rejection are not credited, which matched the measured ranking on a
    2-core CPU, benchmarks/RESULTS.md)."""
    return max(
        (
            chain_tokens(alpha, n)
            / (
                max(costs.target_shared.seconds(n + 1), n * costs.draft_shared.seconds(1))
                + (1 - alpha**n) * n * costs.draft_shared.seconds(1)
            ),
            n,
        )
        for n in range(1, max_length + 1)
    )


def choose_execution(costs: Placement, max_length: int) -> str:
    """"serial" or "parallel": the mode with the higher predicted throughput, as a geometric
    mean over ACCEPTANCE_RANGE (ties go to serial, which needs no second process)."""
    ratio = 1.0
    for alpha in ACCEPTANCE_RANGE:
        ratio *= parallel_rate(costs, alpha, max_length)[0] / serial_rate(costs, alpha, max_length)[0]
    return "parallel" if ratio > 1.0 else "serial"


def best_prefix(values: list[float], base_value: float, base_seconds: float, nodes: int,
                target: Curve, draft: Curve | None = None, width: int = 1) -> int:
    """How many of `values` (candidate nodes' expected acceptances, best first) to add to a tree
    that already expects `base_value` tokens per round at `base_seconds` with `nodes` nodes: the
    count j that maximises (base_value + sum(values[:j])) / (base_seconds + extra time), the
    extra time being the verify slots, target(1 + nodes + j) - target(1 + nodes), and with
    `draft` (nodes the draft is to be shown in a forward already `width` wide) the draft's too,
    draft(width + j) - draft(width). 0: add none."""
    verify, shown = target.seconds(1 + nodes), draft.seconds(width) if draft else 0.0
    best, best_rate, gained = 0, base_value / base_seconds, 0.0
    for j, value in enumerate(values, start=1):
        gained += value
        extra = target.seconds(1 + nodes + j) - verify + (draft.seconds(width + j) - shown if draft else 0.0)
        rate = (base_value + gained) / (base_seconds + extra)
        if rate > best_rate:
            best, best_rate = j, rate
    return best
