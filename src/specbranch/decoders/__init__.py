"""Decoding methods, one module each, and the factory that builds them for a model pair."""

from __future__ import annotations

from specbranch.config import SpeculativeConfig
from specbranch.decoders.ar import AutoregressiveDecoder
from specbranch.decoders.base import Decoder
from specbranch.decoders.sd import SpeculativeDecoder
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair
from specbranch.runner import CachedModel

METHODS = ("ar", "sd")


def build_decoder(pair: ModelPair, method: str, spec: SpeculativeConfig, **options: object) -> Decoder:
    """The decoder for `method` on `pair`."""
    if options:
        raise SpecBranchError(f"method {method!r} takes no options {sorted(options)}")
    if method == "ar":
        return AutoregressiveDecoder(CachedModel(pair.target, pair.vocab_size))
    if method not in METHODS:
        raise SpecBranchError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if pair.draft is None:
        raise SpecBranchError(f"method {method!r} needs a draft model")
    target = CachedModel(pair.target, pair.vocab_size)
    draft = CachedModel(pair.draft, pair.vocab_size)
    return SpeculativeDecoder(target, draft, spec, pair.max_length, pair.eos_ids)


__all__ = ["METHODS", "Decoder", "build_decoder"]
