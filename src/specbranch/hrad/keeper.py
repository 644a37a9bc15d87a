"""H-RAD in the decoding loop: after a branch hit, how much of the surviving branch to keep.

SpecBranch's target side (`specbranch.decoders.parallel`) asks its keeper once per branch hit,
right after verification, on the freshest target features z (`specbranch.hrad.features`):

- `PredictorKeeper` (decoding): the predictor's class (`HradClass`; acted on if it proved
  reliable on validation samples of the same decoding mode, greedy or sampled) decides how much
  of the branch becomes the next pending block U, and so where the next branch point is:
    BRANCH_NOW -> keep nothing (branch right after the root: hedge the rejection it expects);
    KEEP_CONFIDENT -> keep tokens while the draft's confidence stays >= epsilon (the implicit signal);
    KEEP_ALL -> keep the whole branch.
- `LabelRecorder` (data collection): keeps the whole branch and labels z with what the next
  round's verification of it did (`HradClass.of_verdict`): BRANCH_NOW = nothing accepted,
  KEEP_ALL = all accepted, KEEP_CONFIDENT = in between.

Only proposals change (how many drafted tokens are put up for verification); verification
itself is untouched, so the output distribution is exactly the target's.
"""

from __future__ import annotations

import torch

from specbranch.backends.base import KVSequence
from specbranch.config import SamplingParams
from specbranch.hrad.classes import HradClass
from specbranch.hrad.features import capture
from specbranch.hrad.predictor import Predictor, PredictorMeta

ALL_BRANCHES = 1 << 16  # more branches than any branch point has


def keep_confident(confidences: list[float], epsilon: float) -> int:
    """Leading branch tokens whose draft confidence is >= epsilon."""
    n = 0
    while n < len(confidences) and confidences[n] >= epsilon:
        n += 1
    return n


def trusted_classes(confusion: list[list[int]], min_precision: float = 0.5) -> list[bool]:
    """Which predicted classes were right at least `min_precision` of the time on validation.

    confusion[t][p] counts validation samples of true class t predicted as p (indices: `HradClass`).
    A class never predicted there, or no confusion at all, is trusted.
    """
    if not confusion:
        return [True] * len(HradClass)
    trusted = []
    for c in range(len(confusion)):
        predicted = sum(row[c] for row in confusion)
        trusted.append(predicted == 0 or confusion[c][c] / predicted >= min_precision)
    return trusted


def trusted_for_mode(meta: PredictorMeta, greedy: bool) -> list[bool]:
    """`trusted_classes` on the validation samples of the decoding mode (greedy or sampled).

    A predictor whose validation split has no sample of that mode proved nothing there: only
    KEEP_CONFIDENT, the draft-confidence cut, is acted on. One trained before per-mode scores were
    kept is judged on its whole validation split. In a mode not in `meta.modes` nothing is
    trusted: H-RAD is off there.
    """
    mode = "greedy" if greedy else "sampled"
    if mode not in meta.modes:
        return [False] * len(HradClass)
    if not meta.val_confusion_by_mode:
        return trusted_classes(meta.val_confusion)
    confusion = meta.val_confusion_by_mode.get(mode)
    if confusion is None:
        return [c == HradClass.KEEP_CONFIDENT for c in HradClass]
    return trusted_classes(confusion)


class PredictorKeeper:
    """Keeps as much of the surviving branch as the trained predictor's class says.

    Hybrid of the explicit and the implicit signal: a predicted class that was wrong more often
    than right on the validation samples of the current decoding mode (`trusted_for_mode`) is
    not acted on; the keeper falls back to KEEP_CONFIDENT, the draft-confidence cut.

    trusted[c]: whether class c is acted on in the current request's decoding mode; valid from
    `start`, which the decoder calls at the beginning of every request, before any `keep`.
    """

    trusted: list[bool]

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.capture_layers = predictor.meta.layers

    def start(self, sampling: SamplingParams) -> int:
        """A new request; 1 if the keeper may keep more than the confident prefix (KEEP_ALL
        trusted in this mode): the draft then drafts its first branch whole. KEEP_ALL on a hit
        of another branch keeps what that branch holds, its confident prefix."""
        self.trusted = trusted_for_mode(self.predictor.meta, sampling.greedy)
        self.capture_layers = self.predictor.meta.layers if any(self.trusted) else 0  # off: no features
        return int(self.trusted[HradClass.KEEP_ALL])

    def keep(
        self, target: KVSequence, root: int, confidences: list[float], epsilon: float
    ) -> tuple[int, int]:
        """(tokens of the branch after the root to keep, class acted on) for the branch just hit;
        class -1 (no decision) and the confident prefix where H-RAD is off in this mode."""
        if not any(self.trusted):
            return keep_confident(confidences, epsilon), -1
        label = self.predictor.predict(capture(target, root))
        if not self.trusted[label]:
            label = HradClass.KEEP_CONFIDENT
        if label == HradClass.BRANCH_NOW:
            return 0, label
        if label == HradClass.KEEP_CONFIDENT:
            return keep_confident(confidences, epsilon), label
        return len(confidences), label

    def observe(self, verified: int, accepted: int) -> None:
        """The next round's verdict on the kept block (unused while decoding)."""


class LabelRecorder:
    """Keeps every branch whole and records (z, label) pairs for training."""

    def __init__(self, layers: int) -> None:
        self.capture_layers = layers
        self.features: list[torch.Tensor] = []
        self.labels: list[int] = []
        self.waiting: torch.Tensor | None = None

    def start(self, sampling: SamplingParams) -> int:
        """Labels need whole branches, whichever is hit: the draft drafts them all whole."""
        return ALL_BRANCHES

    def keep(
        self, target: KVSequence, root: int, confidences: list[float], epsilon: float
    ) -> tuple[int, int]:
        self.waiting = capture(target, root)
        return len(confidences), -1

    def observe(self, verified: int, accepted: int) -> None:
        if self.waiting is None or verified == 0:
            return
        self.features.append(self.waiting)
        self.labels.append(int(HradClass.of_verdict(verified, accepted)))
        self.waiting = None

    def take(self) -> tuple[torch.Tensor, list[int]]:
        """The samples recorded since the last take: features [n, D], labels [n].

        A sample still waiting for its label (the generation ended first) is dropped.
        """
        features = torch.stack(self.features) if self.features else torch.zeros(0)
        out = (features, self.labels)
        self.features, self.labels, self.waiting = [], [], None
        return out
