"""The H-RAD predictor: a 3-class MLP on target features, saved with what it was trained for.

Classes (`HradClass`: what the *next* round will do with the surviving branch, ALGORITHM.md
"H-RAD"): BRANCH_NOW = its draft will be fully rejected (keep nothing, branch right away),
KEEP_CONFIDENT = partially accepted (keep tokens while the draft's confidence stays >= epsilon),
KEEP_ALL = fully accepted (keep the whole branch).

A predictor file (`torch.save` of plain tensors and a metadata dict; loaded with
weights_only=True) carries the model pair it was trained on, K, the MLP's sizes, the class
meanings, the training-data size and its validation scores. Loading it for another pair is
refused with a clear error: its features would mean nothing there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from specbranch.errors import SpecBranchError
from specbranch.hrad.classes import HradClass
from specbranch.models import ModelPair

CLASSES = tuple(c.description for c in HradClass)  # the class meanings a predictor file records
FORMAT = "specbranch-hrad-1"
MODES = ("greedy", "sampled")  # decoding modes: temperature 0, temperature > 0


def _model_name(model: nn.Module | None) -> str:
    """The model's folder name (a built-in model's includes its checksum); '' if it has none."""
    if model is None:
        return ""
    return Path(str(getattr(model.config, "_name_or_path", "") or "")).name


def pair_identity(pair: ModelPair) -> dict:
    """What a predictor must match to be used with `pair`: model names and the target's shape."""
    config = pair.target.config
    return {
        "target": _model_name(pair.target),
        "draft": _model_name(pair.draft),
        "vocab_size": pair.vocab_size,
        "hidden_size": int(config.hidden_size),
        "num_layers": int(config.num_hidden_layers),
    }


@dataclass
class PredictorMeta:
    """What a predictor was trained for and on.

    pair: the pair's name (informative); identity: `pair_identity` of the pair; layers: K;
    feature_dim: width of z; hidden: the MLP's two hidden widths; dropout: its dropout rate;
    classes: the meaning of each output (`HradClass` descriptions, in class order);
    train_samples / val_samples: split sizes;
    val_accuracy / val_confusion: scores on the validation split (rows: true class);
    val_confusion_by_mode: the confusion of the validation samples collected greedily
    ("greedy") and at temperature > 0 ("sampled"), for the modes the data holds.
    modes: the decoding modes ("greedy", "sampled") the keeper acts in; in the others it is
    off, as with `--hrad none` (set with `hrad train --modes` where the benchmark shows H-RAD
    does not pay in a mode).
    class_priors: the classes' shares in the training split; the MLP is trained class-balanced
    (so it learns the rare classes) and `Predictor` puts the priors back when it decides (so
    it does not over-predict them: argmax of logits + log prior). Uniform priors: plain argmax.
    """

    pair: str
    identity: dict
    layers: int
    feature_dim: int
    hidden: tuple[int, int]
    dropout: float
    classes: tuple[str, ...] = CLASSES
    train_samples: int = 0
    val_samples: int = 0
    val_accuracy: float = 0.0
    val_confusion: list[list[int]] = field(default_factory=list)
    val_confusion_by_mode: dict[str, list[list[int]]] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    modes: tuple[str, ...] = MODES
    class_priors: list[float] = field(default_factory=lambda: [1 / len(HradClass)] * len(HradClass))


class HRadMLP(nn.Module):
    """3 linear layers with ReLU and dropout; input standardised with the training data's stats."""

    def __init__(self, feature_dim: int, hidden: tuple[int, int], dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))
        self.net = nn.Sequential(
            nn.Linear(feature_dim, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[1], len(HradClass)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits: [..., feature_dim] -> [..., 3]."""
        return self.net((z - self.mean) / self.std)


class Predictor:
    """A trained HRadMLP plus its metadata; `predict` is what the decoder calls."""

    def __init__(self, mlp: HRadMLP, meta: PredictorMeta) -> None:
        self.mlp, self.meta = mlp.eval(), meta
        self.log_prior = torch.tensor(meta.class_priors).clamp_min(1e-6).log()  # [3]

    @torch.inference_mode()
    def predict(self, z: torch.Tensor) -> HradClass:
        """The class for one feature vector z: [feature_dim]."""
        return HradClass(int((self.mlp(z.float()) + self.log_prior).argmax()))

    @torch.inference_mode()
    def predict_batch(self, z: torch.Tensor) -> torch.Tensor:
        """Classes (`HradClass` values) for many feature vectors: [n, feature_dim] -> [n]."""
        return (self.mlp(z.float()) + self.log_prior).argmax(-1)

    def save(self, path: str | Path) -> None:
        """Write the predictor (weights and metadata) to `path`, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        meta = asdict(self.meta)
        torch.save({"format": FORMAT, "meta": meta, "state": self.mlp.state_dict()}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, pair: ModelPair | None = None) -> Predictor:
        """Read a predictor; with `pair`, refuse it unless it was trained for that pair."""
        try:
            blob = torch.load(path, weights_only=True, map_location="cpu")
        except FileNotFoundError:
            raise SpecBranchError(f"H-RAD predictor not found: {path}") from None
        except Exception as exc:
            raise SpecBranchError(f"{path}: not an H-RAD predictor ({exc.__class__.__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise SpecBranchError(f"{path}: not an H-RAD predictor (format {FORMAT} expected)")
        raw = blob["meta"]
        meta = PredictorMeta(**{**raw, "hidden": tuple(raw["hidden"]), "classes": tuple(raw["classes"]),
                                "modes": tuple(raw.get("modes", MODES))})
        if pair is not None:
            mine = pair_identity(pair)
            diff = [
                f"{k}: predictor {meta.identity.get(k)!r}, pair {v!r}"
                for k, v in mine.items()
                if meta.identity.get(k) != v
            ]
            if diff:
                raise SpecBranchError(
                    f"H-RAD predictor {path} was trained for another model pair ({'; '.join(diff)}); "
                    "collect and train one for this pair (specbranch hrad collect / train)"
                )
        mlp = HRadMLP(meta.feature_dim, meta.hidden, meta.dropout)
        mlp.load_state_dict(blob["state"])
        return cls(mlp, meta)
