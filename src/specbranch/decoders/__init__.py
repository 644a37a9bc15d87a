"""Decoding methods, one module each: the algorithms only.

ar, sd (serial), pearl and specbranch (their round in `parallel`, their draft side in
`drafter`). Nothing here spawns processes, loads models, runs the cost probe or reads predictor
files: `specbranch.runtime` assembles decoders from these parts, and its registry
(`specbranch.runtime.methods`) names the methods.
"""

from __future__ import annotations

from specbranch.decoders.base import Decoder

__all__ = ["Decoder"]
