"""H-RAD in the decoding loop: after a branch hit, how much of the surviving branch to keep.

SpecBranch's target side (`specbranch.decoders.parallel`) asks its keeper once per branch hit,
right after verification, on the freshest target features z (`specbranch.hrad.features`):

- `PredictorKeeper` (decoding): the predictor's class (if it proved reliable on validation)
  decides how much of the branch becomes the next pending block U, and so where the next
  branch point is:
    0 -> keep nothing (branch right after the root: hedge the rejection it expects);
    1 -> keep tokens while the draft's confidence stays >= epsilon (the implicit signal);
    2 -> keep the whole branch.
- `LabelRecorder` (data collection): keeps the whole branch and labels z with what the next
  round's verification of it did: 0 = nothing accepted, 2 = all accepted, 1 = in between.

Only proposals change (how many drafted tokens are put up for verification); verification
itself is untouched, so the output distribution is exactly the target's.
"""

from __future__ import annotations

import torch

from specbranch.hrad.features import capture
from specbranch.hrad.predictor import Predictor
from specbranch.runner import CachedModel

BRANCH_NOW, KEEP_CONFIDENT, KEEP_ALL = range(3)


def keep_confident(confidences: list[float], epsilon: float) -> int:
    """Leading branch tokens whose draft confidence is >= epsilon."""
    n = 0
    while n < len(confidences) and confidences[n] >= epsilon:
        n += 1
    return n


def trusted_classes(confusion: list[list[int]], min_precision: float = 0.5) -> list[bool]:
    """Which predicted classes were right at least `min_precision` of the time on validation.

    confusion[t][p] counts validation samples of true class t predicted as p. A class never
    predicted there, or no confusion at all, is trusted.
    """
    if not confusion:
        return [True] * 3
    trusted = []
    for c in range(len(confusion)):
        predicted = sum(row[c] for row in confusion)
        trusted.append(predicted == 0 or confusion[c][c] / predicted >= min_precision)
    return trusted


class PredictorKeeper:
    """Keeps as much of the surviving branch as the trained predictor's class says.

    Hybrid of the explicit and the implicit signal: a predicted class that was wrong more often
    than right on the predictor's own validation split (`trusted_classes`) is not acted on;
    the keeper falls back to class 1, the draft-confidence cut.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.capture_layers = predictor.meta.layers
        self.trusted = trusted_classes(predictor.meta.val_confusion)

    def keep(
        self, target: CachedModel, root: int, confidences: list[float], epsilon: float
    ) -> tuple[int, int]:
        """(tokens of the branch after the root to keep, class acted on) for the branch just hit."""
        label = self.predictor.predict(capture(target, root))
        if not self.trusted[label]:
            label = KEEP_CONFIDENT
        if label == BRANCH_NOW:
            return 0, label
        if label == KEEP_CONFIDENT:
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

    def keep(
        self, target: CachedModel, root: int, confidences: list[float], epsilon: float
    ) -> tuple[int, int]:
        self.waiting = capture(target, root)
        return len(confidences), -1

    def observe(self, verified: int, accepted: int) -> None:
        if self.waiting is None or verified == 0:
            return
        label = BRANCH_NOW if accepted == 0 else KEEP_ALL if accepted == verified else KEEP_CONFIDENT
        self.features.append(self.waiting)
        self.labels.append(label)
        self.waiting = None

    def take(self) -> tuple[torch.Tensor, list[int]]:
        """The samples recorded since the last take: features [n, D], labels [n].

        A sample still waiting for its label (the generation ended first) is dropped.
        """
        features = torch.stack(self.features) if self.features else torch.zeros(0)
        out = (features, self.labels)
        self.features, self.labels, self.waiting = [], [], None
        return out
