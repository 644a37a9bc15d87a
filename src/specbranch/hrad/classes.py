"""H-RAD's three classes: what the next round's verification does to the branch just hit.

The one definition of the classes (ALGORITHM.md, "H-RAD"). Each carries
- its number (the predictor's output index and the label stored in collected data),
- `description`: the meaning shown to people and written into predictor files,
- `counter`: the `GenerationMetrics` field counting the keeper's decisions of that class,
- `short`: its one-word name in summaries of collected labels.

This module imports nothing from specbranch: the metrics, the keeper, the predictor and the
trainer all read it.
"""

from __future__ import annotations

from enum import IntEnum


class HradClass(IntEnum):
    """A class of the H-RAD predictor; the keeper keeps that much of the surviving branch.

    BRANCH_NOW: the branch's draft will be fully rejected -> keep nothing, branch right after the root;
    KEEP_CONFIDENT: partially accepted -> keep tokens while the draft's confidence stays >= epsilon;
    KEEP_ALL: fully accepted -> keep the whole branch.
    """

    description: str
    counter: str
    short: str

    def __new__(cls, value: int, description: str, counter: str, short: str) -> HradClass:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        member.counter = counter
        member.short = short
        return member

    BRANCH_NOW = 0, "fully rejected: branch now, keep nothing", "hrad_keep_none", "none"
    KEEP_CONFIDENT = 1, "partial: keep while confident", "hrad_keep_confident", "partial"
    KEEP_ALL = 2, "fully accepted: keep all", "hrad_keep_all", "all"

    @classmethod
    def of_verdict(cls, verified: int, accepted: int) -> HradClass:
        """The class a branch turned out to have: `accepted` of its `verified` tokens were kept."""
        if accepted == 0:
            return cls.BRANCH_NOW
        return cls.KEEP_ALL if accepted == verified else cls.KEEP_CONFIDENT
