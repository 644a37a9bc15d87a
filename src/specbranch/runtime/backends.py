"""Which backend runs each model: chosen here and only here (`backends.base` defines the seam).

Today every model is a transformers model run by `TorchBackend`; an engine for another model
format is one backend module under `backends/` plus its choice here. The rest of the library
reads a backend's declared `Capabilities`, never its type.
"""

from __future__ import annotations

import torch

from specbranch.backends.base import Backend
from specbranch.backends.pytorch import TorchBackend
from specbranch.models import ModelPair


def model_backend(model: torch.nn.Module, vocab_size: int) -> Backend:
    """The backend that runs `model` (logits cut to `vocab_size`)."""
    return TorchBackend(model, vocab_size)


def pair_backends(pair: ModelPair) -> tuple[Backend, Backend | None]:
    """The target's backend and the draft's (None: the pair has no draft)."""
    draft = model_backend(pair.draft, pair.vocab_size) if pair.draft is not None else None
    return model_backend(pair.target, pair.vocab_size), draft
