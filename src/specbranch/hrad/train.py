"""Training the H-RAD predictor from collected (features, label) samples.

A stratified train/validation split, inputs standardised with the training split's mean and
standard deviation, class balancing by inverse-frequency weights in the cross-entropy (the
classes are far from equally common), AdamW with weight decay, and the epoch with the best
balanced validation accuracy kept (early stopping). The saved predictor decides with the
training priors put back (`PredictorMeta.class_priors`); the validation accuracy and confusion
matrix it reports are those of that decision rule, overall and per decoding mode (greedy,
sampled) where the data holds both: the keeper acts only on what the mode it decodes in proved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from specbranch.config import option
from specbranch.errors import SpecBranchError
from specbranch.hrad.classes import HradClass
from specbranch.hrad.predictor import MODES, HRadMLP, Predictor, PredictorMeta


@dataclass(frozen=True)
class TrainConfig:
    """hidden: the two hidden widths; val_fraction: share of each class held out for validation;
    modes: the decoding modes the predictor will act in (`PredictorMeta.modes`)."""

    hidden: tuple[int, int] = option((64, 32), "hidden widths", nargs=2, metavar=("H1", "H2"))
    dropout: float = option(0.2, "dropout after each hidden layer")
    epochs: int = option(60, "passes over the training split")
    batch_size: int = option(64, "minibatch size")
    lr: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = option(1e-2, "AdamW weight decay")
    val_fraction: float = option(0.2, "share of each class held out")
    seed: int = option(0, "split and initialisation seed")
    modes: tuple[str, ...] = option(
        MODES,
        "decoding modes the predictor acts in; in the others H-RAD stays off as with --hrad none. "
        "Restrict it where the benchmark shows H-RAD does not pay in a mode",
        nargs="+",
        choices=MODES,
    )

    def __post_init__(self) -> None:
        if not self.modes or set(self.modes) - set(MODES):
            raise SpecBranchError(f"modes must be among {MODES}, got {self.modes!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise SpecBranchError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or min(self.hidden) < 1:
            raise SpecBranchError("epochs, batch size and hidden widths must be >= 1")


def confusion_matrix(true: torch.Tensor, pred: torch.Tensor) -> list[list[int]]:
    """counts[t][p] of samples of true class t predicted as p (t, p: `HradClass`)."""
    counts = torch.zeros(len(HradClass), len(HradClass), dtype=torch.long)
    counts.index_put_((true.long(), pred.long()), torch.ones_like(true, dtype=torch.long), accumulate=True)
    return counts.tolist()


def balanced_accuracy(confusion: list[list[int]]) -> float:
    """Mean over the classes present of the share of that class predicted right."""
    recalls = [row[i] / sum(row) for i, row in enumerate(confusion) if sum(row)]
    return sum(recalls) / len(recalls) if recalls else 0.0


def split(
    labels: torch.Tensor, val_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train indices, validation indices): each class split in the same proportion."""
    train, val = [], []
    for c in HradClass:
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(len(idx) * val_fraction) if len(idx) > 1 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train), torch.cat(val)


def train_predictor(
    features: torch.Tensor,
    labels: torch.Tensor,
    header: dict,
    config: TrainConfig,
    data: list[str] = (),
    sampled: torch.Tensor | None = None,
) -> Predictor:
    """Train on features [N, D] with labels [N] (`HradClass` values); header: the data file's header;
    sampled [N]: which samples were collected at temperature > 0 (None: all greedy)."""
    if features.ndim != 2 or len(features) != len(labels):
        raise SpecBranchError("features must be [N, D] with one label each")
    if len(labels) < 10:
        raise SpecBranchError(f"only {len(labels)} samples; collect more data (at least 10)")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    train_idx, val_idx = split(labels, config.val_fraction, generator)
    x, y = features[train_idx].float(), labels[train_idx].long()
    x_val, y_val = features[val_idx].float(), labels[val_idx].long()
    counts = torch.bincount(y, minlength=len(HradClass)).float()  # [classes] training samples per class
    mlp = HRadMLP(features.shape[1], config.hidden, config.dropout)
    mlp.mean.copy_(x.mean(0))
    mlp.std.copy_(x.std(0).clamp_min(1e-4))
    _fit(mlp, (x, y), (x_val, y_val), counts, config, generator)
    meta = PredictorMeta(
        pair=header["pair"],
        identity=header["identity"],
        layers=header["layers"],
        feature_dim=features.shape[1],
        hidden=config.hidden,
        dropout=config.dropout,
        train_samples=len(y),
        val_samples=len(y_val),
        data=list(data),
        modes=tuple(config.modes),
        class_priors=(counts / counts.sum()).tolist(),
    )
    predictor = Predictor(mlp, meta)
    hot = sampled[val_idx] if sampled is not None else torch.zeros(len(y_val), dtype=torch.bool)
    _score(predictor, x_val, y_val, hot)
    return predictor


def _fit(
    mlp: HRadMLP,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    counts: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
) -> None:
    """Class-balanced AdamW on train (x [n, D], y [n]); leaves `mlp` with the weights of the epoch
    whose plain argmax scored the best balanced accuracy on val (on train if val is empty)."""
    x, y = train
    weights = torch.where(counts > 0, counts.sum() / (len(HradClass) * counts.clamp_min(1)), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_score, y_score = val if len(val[1]) else train
    best: tuple[float, dict] | None = None
    for _ in range(config.epochs):
        mlp.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss_fn(mlp(x[batch]), y[batch]).backward()
            optimizer.step()
        mlp.eval()
        with torch.no_grad():
            pred = mlp(x_score).argmax(-1)
        score = balanced_accuracy(confusion_matrix(y_score, pred))
        if best is None or score > best[0]:
            best = (score, {k: v.clone() for k, v in mlp.state_dict().items()})
    assert best is not None
    mlp.load_state_dict(best[1])


def _score(predictor: Predictor, x_val: torch.Tensor, y_val: torch.Tensor, hot: torch.Tensor) -> None:
    """Fill the predictor's validation scores, of its decision rule (priors put back), overall and
    per decoding mode present; hot [n]: the validation samples collected at temperature > 0."""
    meta = predictor.meta
    pred = predictor.predict_batch(x_val) if len(y_val) else torch.zeros(0, dtype=torch.long)
    meta.val_confusion = confusion_matrix(y_val, pred)
    for mode, mask in (("greedy", ~hot), ("sampled", hot)):
        if mask.any():
            meta.val_confusion_by_mode[mode] = confusion_matrix(y_val[mask], pred[mask])
    meta.val_accuracy = float((pred == y_val).float().mean()) if len(y_val) else 0.0
