"""Per-generation metrics, with the names used everywhere (library, CLI, benchmark, server).

Terms (ALGORITHM.md, "Metrics"):
- a *round* is one target forward that verifies (AR: one forward, one token);
- `acceptance_rate` = accepted draft tokens / verified draft tokens;
- `mean_accepted_length` = committed tokens / target forwards (bonus or correction included;
  AR scores exactly 1.0);
- `rollback_rate` = drafted tokens discarded on the chosen path / drafted tokens on that path;
- `draft_waste` = all discarded drafted tokens (unselected branches too) / all drafted tokens;
- `branch_hit_rate` = rounds whose branch point hit a branch / rounds that branched;
- `tokens_per_second` = committed tokens / wall time;
- `overlap_efficiency` = busy time of the busier side / wall time;
- `verify_tests` = the verification tests the rounds ran, by kind (`verify.TESTS`: deterministic
  draws, sampled tokens, later siblings of rule 4, lookup point masses beside sampled drafts,
  mixed tree nodes), so a caller (and a test) sees which paths through the rules ran;
- `rounds_by_mode` = serial SpecBranch's rounds by what its controller chose (`plain`: the target
  alone, `lookup`: copied candidates without a draft forward, `draft`: a draft tree);
- `hrad_overhead` = time H-RAD spent deciding (feature capture and predictor) / wall time;
  `hrad_keep_none` / `hrad_keep_confident` / `hrad_keep_all` count its decisions by class
  (`HradClass.counter`);
- `cost_ratio` = c, the measured T_target_verify / T_draft_step (parallel methods), and
  `draft_length` the branch length it set (PEARL: the initial block);
- `backend`: what ran the models ("torch" or "llama.cpp", `backends.base.Backend.name`);
- SpecBranch's `execution` ("parallel" or "serial"); in serial (tree) execution
  `tree_max_nodes` / `tree_max_depth` (N and D, the most a tree may hold), `mean_tree_size` =
  drafted tree nodes / tree rounds (`tree_nodes_total` / `tree_rounds`), `mean_tree_depth` = tree
  depths / tree rounds (`tree_depth_total` / `tree_rounds`), and
  `acceptance_by_depth[d]` = walks that accepted a node at depth d + 1 / walks that tested
  children there (`depth_accepted` / `depth_tested`; d = 0: the root's children).

A rate is *undefined* when its denominator is 0 (nothing to rate): one generation's rates
read 0.0 there, a summary's (`summarize_runs`) None.

Over many generations (the benchmark's runs of a method, the server's requests) the counters
and times are summed (`GenerationMetrics.merge`, `total`) and the rates taken of the sums,
except `overlap_efficiency` and `cost_ratio`, which a summary reports as means over the runs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields

from specbranch.hrad.classes import HradClass

# Where a committed token came from (`RoundStats.origins`, `GenerationResult.origins`):
DRAFT = "draft"  # a token the draft model proposed on its likeliest line, accepted by the target
BRANCH = "branch"  # a draft token accepted from a branch other than the likeliest root (SpecBranch)
LOOKUP = "lookup"  # a prompt-lookup candidate (copied from the context) the target accepted
TARGET = "target"  # a token the target emitted itself: a correction, a bonus token, or AR's token
ORIGINS = (DRAFT, BRANCH, LOOKUP, TARGET)


@dataclass
class RoundStats:
    """What one round did.

    committed: tokens appended to the output this round.
    drafted: draft tokens on the chosen path that reached verification or were thrown away.
    verified: draft tokens the target checked; accepted: how many of those it kept.
    drafted_total: every drafted token including unselected branches.
    branched / branch_hit: whether the round had a branch point and whether it hit.
    hrad_class / hrad_seconds: H-RAD's decision after the hit (-1: none) and its run time.
    origins: where each committed token came from (`ORIGINS`), one per token.
    tests: the verification tests the round ran, by kind (`verify.TESTS`).
    mode: what serial SpecBranch's controller chose for the round (`tree_control.MODES`; "" for
    other methods).
    """

    committed: list[int]
    origins: list[str]
    drafted: int = 0
    verified: int = 0
    accepted: int = 0
    drafted_total: int = 0
    branched: bool = False
    branch_hit: bool = False
    hrad_class: int = -1
    hrad_seconds: float = 0.0
    tests: Counter = field(default_factory=Counter)
    mode: str = ""

    @classmethod
    def block(
        cls, tokens: list[int], accepted: int, nxt: int, origins: list[str], tests: Counter
    ) -> RoundStats:
        """A round that verified one block of drafted `tokens` (their `origins`) with `tests`:
        the first `accepted` of them and the next token `nxt` (correction or bonus) committed."""
        n = len(tokens)
        committed = tokens[:accepted] + [nxt]
        return cls(committed, origins[:accepted] + [TARGET], n, n, accepted, n, tests=tests)


@dataclass
class GenerationMetrics:
    """Totals of one generation (or of many, merged) and the rates derived from them."""

    new_tokens: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    drafted_tokens: int = 0
    verified_tokens: int = 0
    accepted_tokens: int = 0
    drafted_tokens_total: int = 0
    branch_rounds: int = 0
    branch_hits: int = 0
    wall_seconds: float = 0.0
    target_busy_seconds: float = 0.0
    draft_busy_seconds: float = 0.0
    cost_ratio: float = 0.0
    draft_length: int = 0
    hrad_keep_none: int = 0
    hrad_keep_confident: int = 0
    hrad_keep_all: int = 0
    hrad_seconds: float = 0.0
    execution: str = ""
    backend: str = ""
    tree_max_nodes: int = 0
    tree_max_depth: int = 0
    tree_rounds: int = 0
    tree_nodes_total: int = 0
    tree_depth_total: int = 0
    depth_tested: list[int] = field(default_factory=list)
    depth_accepted: list[int] = field(default_factory=list)
    verify_tests: dict[str, int] = field(default_factory=dict)
    rounds_by_mode: dict[str, int] = field(default_factory=dict)
    accept_lengths: list[int] = field(default_factory=list)

    def add_round(self, stats: RoundStats, kept: int) -> None:
        """Count one round; kept = its committed tokens left after the stop conditions."""
        self.target_forwards += 1
        self.drafted_tokens += stats.drafted
        self.verified_tokens += stats.verified
        self.accepted_tokens += stats.accepted
        self.drafted_tokens_total += max(stats.drafted_total, stats.drafted)
        self.branch_rounds += int(stats.branched)
        self.branch_hits += int(stats.branch_hit)
        if stats.hrad_class >= 0:
            name = HradClass(stats.hrad_class).counter
            setattr(self, name, getattr(self, name) + 1)
        self.hrad_seconds += stats.hrad_seconds
        self.verify_tests = dict(Counter(self.verify_tests) + stats.tests)
        if stats.mode:
            self.rounds_by_mode = dict(Counter(self.rounds_by_mode) + Counter({stats.mode: 1}))
        self.accept_lengths.append(kept)

    def merge(self, other: GenerationMetrics, accept_lengths: bool = False) -> None:
        """Add another generation's counters and times (totals over many requests).

        accept_lengths are appended only when asked, so a long-running total stays small;
        the per-depth counts add position by position; LATEST fields take the latest value.
        """
        for name, value in asdict(other).items():
            if name in LATEST:
                setattr(self, name, value or getattr(self, name))
            elif name in BY_DEPTH:
                mine = getattr(self, name)
                mine += [0] * (len(value) - len(mine))
                for i, count in enumerate(value):
                    mine[i] += count
            elif name in BY_KIND:
                setattr(self, name, dict(Counter(getattr(self, name)) + Counter(value)))
            elif name != "accept_lengths":
                setattr(self, name, getattr(self, name) + value)
        if accept_lengths:
            self.accept_lengths += other.accept_lengths

    @classmethod
    def from_dict(cls, data: dict) -> GenerationMetrics:
        """The metrics back from `to_dict()`'s output (the derived rates and unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        lists = ("accept_lengths", *BY_DEPTH)
        copy = lambda k, v: list(v) if k in lists else dict(v) if k in BY_KIND else v  # noqa: E731
        return cls(**{k: copy(k, v) for k, v in data.items() if k in names})

    def rate(self, name: str, undefined: float | None = 0.0) -> float | None:
        """The rate `name` (a key of RATES); `undefined` where its denominator is 0."""
        num, den = RATES[name](self)
        return num / den if den else undefined

    @property
    def acceptance_rate(self) -> float:
        return self.rate("acceptance_rate")

    @property
    def mean_accepted_length(self) -> float:
        return self.rate("mean_accepted_length")

    @property
    def rollback_rate(self) -> float:
        return self.rate("rollback_rate")

    @property
    def draft_waste(self) -> float:
        return self.rate("draft_waste")

    @property
    def branch_hit_rate(self) -> float:
        return self.rate("branch_hit_rate")

    @property
    def tokens_per_second(self) -> float:
        return self.rate("tokens_per_second")

    @property
    def overlap_efficiency(self) -> float:
        return self.rate("overlap_efficiency")

    @property
    def hrad_overhead(self) -> float:
        return self.rate("hrad_overhead")

    @property
    def mean_tree_size(self) -> float:
        return self.rate("mean_tree_size")

    @property
    def mean_tree_depth(self) -> float:
        return self.rate("mean_tree_depth")

    @property
    def acceptance_by_depth(self) -> list[float | None]:
        """Per depth d: walks that accepted a node at depth d + 1 / walks that tested there."""
        return [a / t if t else None for a, t in zip(self.depth_accepted, self.depth_tested, strict=True)]

    def to_dict(self) -> dict:
        """All counters and rates as a flat JSON-ready dict."""
        rates = {name: self.rate(name) for name in RATES}
        return asdict(self) | rates | {"acceptance_by_depth": self.acceptance_by_depth}


# merge keeps the latest value of these
LATEST = ("cost_ratio", "draft_length", "execution", "backend", "tree_max_nodes", "tree_max_depth")
BY_DEPTH = ("depth_tested", "depth_accepted")  # per-depth counts, merged position by position
BY_KIND = ("verify_tests", "rounds_by_mode")  # counts by name, merged name by name


# Each rate's (numerator, denominator), in the order `to_dict` lists them (module docstring).
RATES: dict[str, Callable[[GenerationMetrics], tuple[float, float]]] = {
    "acceptance_rate": lambda m: (m.accepted_tokens, m.verified_tokens),
    "mean_accepted_length": lambda m: (m.new_tokens, m.target_forwards),
    "rollback_rate": lambda m: (m.drafted_tokens - m.accepted_tokens, m.drafted_tokens),
    "draft_waste": lambda m: (m.drafted_tokens_total - m.accepted_tokens, m.drafted_tokens_total),
    "branch_hit_rate": lambda m: (m.branch_hits, m.branch_rounds),
    "tokens_per_second": lambda m: (m.new_tokens, m.wall_seconds),
    "overlap_efficiency": lambda m: (max(m.target_busy_seconds, m.draft_busy_seconds), m.wall_seconds),
    "hrad_overhead": lambda m: (m.hrad_seconds, m.wall_seconds),
    "mean_tree_size": lambda m: (m.tree_nodes_total, m.tree_rounds),
    "mean_tree_depth": lambda m: (m.tree_depth_total, m.tree_rounds),
}

# What `summarize_runs` reports, in this order.
SUMMARY_KEYS = (
    "mean_accepted_length",
    "acceptance_rate",
    "rollback_rate",
    "draft_waste",
    "branch_hit_rate",
    "target_busy_seconds",
    "draft_busy_seconds",
    "overlap_efficiency",
    "cost_ratio",
    "hrad_overhead",
    "execution",
    "backend",
    "mean_tree_size",
    "mean_tree_depth",
    "acceptance_by_depth",
    "rounds_by_mode",
    "accept_lengths",
)


def total(runs: Iterable[GenerationMetrics]) -> GenerationMetrics:
    """One GenerationMetrics summing the counters and times of `runs`, with all their accept_lengths."""
    out = GenerationMetrics()
    for metrics in runs:
        out.merge(metrics, accept_lengths=True)
    return out


def summarize_runs(runs: Sequence[GenerationMetrics]) -> dict:
    """A method's figures over many runs (the benchmark's summary), keyed by SUMMARY_KEYS.

    The rates are those of the summed counters (None where undefined; `hrad_overhead` None when
    H-RAD never ran); busy times are summed; `overlap_efficiency` and `cost_ratio` are means of
    the runs' own values; `execution` the latest run's (None: not SpecBranch);
    accept_lengths are all the runs' rounds. No runs: every figure None (accept_lengths and
    acceptance_by_depth empty).
    """
    if not runs:
        empty = {"accept_lengths": [], "acceptance_by_depth": [], "rounds_by_mode": {}}
        return dict.fromkeys(SUMMARY_KEYS) | empty
    t = total(runs)
    rates = {name: t.rate(name, undefined=None) for name in RATES}
    figures = {
        "target_busy_seconds": t.target_busy_seconds,
        "draft_busy_seconds": t.draft_busy_seconds,
        "overlap_efficiency": statistics.mean(m.overlap_efficiency for m in runs),
        "cost_ratio": statistics.mean(m.cost_ratio for m in runs),
        "hrad_overhead": rates["hrad_overhead"] if t.hrad_seconds else None,
        "execution": t.execution or None,
        "backend": t.backend or None,
        "acceptance_by_depth": t.acceptance_by_depth,
        "rounds_by_mode": t.rounds_by_mode,
        "accept_lengths": t.accept_lengths,
    }
    return {key: figures[key] if key in figures else rates[key] for key in SUMMARY_KEYS}
