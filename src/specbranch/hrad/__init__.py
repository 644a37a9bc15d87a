"""H-RAD, the rollback-aware draft structure of SpecBranch (ALGORITHM.md, "H-RAD").

features (what the predictor sees), predictor (the 3-class MLP and its file), keeper (its use
in the decoding loop, and the label recorder), data (the collected samples' file), train
(fitting the predictor), collect (running the decoder to gather samples).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from specbranch.hrad.keeper import LabelRecorder, PredictorKeeper
from specbranch.hrad.predictor import Predictor, pair_identity
from specbranch.models import ModelPair

OFF = (None, "none", "off")


def shipped_predictor(pair_name: str) -> Path | None:
    """The predictor shipped for a built-in pair (`specbranch/data/hrad/NAME.pt`), if any."""
    path = Path(str(resources.files("specbranch") / "data" / "hrad" / f"{pair_name}.pt"))
    return path if path.is_file() else None


def resolve_keeper(spec: str | None, pair: ModelPair) -> PredictorKeeper | None:
    """The keeper for `--hrad SPEC`: a predictor file, "auto" (the shipped one for a built-in
    pair, none otherwise) or "none"."""
    if spec in OFF:
        return None
    path = shipped_predictor(pair.name) if spec == "auto" else Path(spec)
    if path is None:
        return None
    return PredictorKeeper(Predictor.load(path, pair))


__all__ = [
    "LabelRecorder",
    "Predictor",
    "PredictorKeeper",
    "pair_identity",
    "resolve_keeper",
    "shipped_predictor",
]
