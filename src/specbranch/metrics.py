"""Per-generation metrics, with the names used everywhere (library, CLI, benchmark, server).

Terms (ALGORITHM.md, "Metrics"):
- a *round* is one target forward that verifies (AR: one forward, one token);
- `acceptance_rate` = accepted draft tokens / verified draft tokens;
- `mean_accepted_length` = committed tokens / target forwards (bonus or correction included;
  AR scores exactly 1.0);
- `rollback_rate` = drafted tokens discarded on the chosen path / drafted tokens on that path;
- `draft_waste` = all discarded drafted tokens (unselected branches too) / all drafted tokens;
- `branch_hit_rate` = rounds whose branch point hit a branch / rounds that branched;
- `overlap_efficiency` = busy time of the busier side / wall time;
- `hrad_overhead` = time H-RAD spent deciding (feature capture and predictor) / wall time;
  `hrad_keep_none` / `hrad_keep_confident` / `hrad_keep_all` count its decisions by class;
- `cost_ratio` = c, the measured T_target_verify / T_draft_step (parallel methods), and
  `draft_length` the branch length it set (PEARL: the initial block).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RoundStats:
    """What one round did.

    committed: tokens appended to the output this round.
    drafted: draft tokens on the chosen path that reached verification or were thrown away.
    verified: draft tokens the target checked; accepted: how many of those it kept.
    drafted_total: every drafted token including unselected branches.
    branched / branch_hit: whether the round had a branch point and whether it hit.
    hrad_class / hrad_seconds: H-RAD's decision after the hit (-1: none) and its run time.
    """

    committed: list[int]
    drafted: int = 0
    verified: int = 0
    accepted: int = 0
    drafted_total: int = 0
    branched: bool = False
    branch_hit: bool = False
    hrad_class: int = -1
    hrad_seconds: float = 0.0


@dataclass
class GenerationMetrics:
    """Totals of one generation and the rates derived from them."""

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
    prefill_seconds: float = 0.0
    target_busy_seconds: float = 0.0
    draft_busy_seconds: float = 0.0
    cost_ratio: float = 0.0
    draft_length: int = 0
    hrad_keep_none: int = 0
    hrad_keep_confident: int = 0
    hrad_keep_all: int = 0
    hrad_seconds: float = 0.0
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
            name = ("hrad_keep_none", "hrad_keep_confident", "hrad_keep_all")[stats.hrad_class]
            setattr(self, name, getattr(self, name) + 1)
        self.hrad_seconds += stats.hrad_seconds
        self.accept_lengths.append(kept)

    def merge(self, other: GenerationMetrics) -> None:
        """Add another generation's counters and times (totals over many requests).

        accept_lengths is left alone, so a long-running total stays small; cost_ratio and
        draft_length take the latest value.
        """
        for name, value in asdict(other).items():
            if name in ("cost_ratio", "draft_length"):
                setattr(self, name, value)
            elif name != "accept_lengths":
                setattr(self, name, getattr(self, name) + value)

    @staticmethod
    def _ratio(num: float, den: float) -> float:
        return num / den if den else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self._ratio(self.accepted_tokens, self.verified_tokens)

    @property
    def mean_accepted_length(self) -> float:
        return self._ratio(self.new_tokens, self.target_forwards)

    @property
    def rollback_rate(self) -> float:
        return self._ratio(self.drafted_tokens - self.accepted_tokens, self.drafted_tokens)

    @property
    def draft_waste(self) -> float:
        return self._ratio(self.drafted_tokens_total - self.accepted_tokens, self.drafted_tokens_total)

    @property
    def branch_hit_rate(self) -> float:
        return self._ratio(self.branch_hits, self.branch_rounds)

    @property
    def tokens_per_second(self) -> float:
        return self._ratio(self.new_tokens, self.wall_seconds)

    @property
    def overlap_efficiency(self) -> float:
        return self._ratio(max(self.target_busy_seconds, self.draft_busy_seconds), self.wall_seconds)

    @property
    def hrad_overhead(self) -> float:
        return self._ratio(self.hrad_seconds, self.wall_seconds)

    def to_dict(self) -> dict:
        """All counters and rates as a flat JSON-ready dict."""
        out = asdict(self)
        for name in (
            "acceptance_rate",
            "mean_accepted_length",
            "rollback_rate",
            "draft_waste",
            "branch_hit_rate",
            "tokens_per_second",
            "overlap_efficiency",
            "hrad_overhead",
        ):
            out[name] = getattr(self, name)
        return out
