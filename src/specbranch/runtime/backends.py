"""Which backend runs each model: chosen here and only here (`backends.base` defines the seam).

A transformers model runs on `TorchBackend`; a GGUF model (`models.gguf.GGUFModel`, loaded by
`load_pair` for the llama.cpp backend) on `LlamaCppBackend`, one llama.cpp context per model.
Either is made on first use and shared by every decoder built on the model (each request has
its own sequences in it), so requests of different methods share its batched forwards. The
rest of the library reads a backend's declared `Capabilities`, never its type.
"""

from __future__ import annotations

import functools
import weakref

import torch

from specbranch.backends.base import Backend
from specbranch.backends.llamacpp import LlamaCppBackend
from specbranch.backends.pytorch import TorchBackend
from specbranch.models import ModelPair
from specbranch.models.gguf import GGUFModel


@functools.cache
def _llamacpp(model: GGUFModel, vocab_size: int) -> LlamaCppBackend:
    return LlamaCppBackend(model, vocab_size, model.context, torch.get_num_threads())


# (id of a model, vocabulary) -> its torch backend, while any decoder holds it (the backend holds
# the model, so the id is not reused meanwhile).
_TORCH: weakref.WeakValueDictionary[tuple[int, int], TorchBackend] = weakref.WeakValueDictionary()


def _torch(model: torch.nn.Module, vocab_size: int) -> TorchBackend:
    key = (id(model), vocab_size)
    backend = _TORCH.get(key)
    if backend is None:
        backend = _TORCH[key] = TorchBackend(model, vocab_size)
    return backend


def model_backend(model: torch.nn.Module | GGUFModel, vocab_size: int) -> Backend:
    """The backend that runs `model` (logits cut to `vocab_size`); llama.cpp threads: the torch
    thread count when it is first made (as every in-process model gets)."""
    if isinstance(model, GGUFModel):
        return _llamacpp(model, vocab_size)
    return _torch(model, vocab_size)


def pair_backends(pair: ModelPair) -> tuple[Backend, Backend | None]:
    """The target's backend and the draft's (None: the pair has no draft)."""
    draft = model_backend(pair.draft, pair.vocab_size) if pair.draft is not None else None
    return model_backend(pair.target, pair.vocab_size), draft
