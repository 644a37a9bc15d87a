"""Decoding methods: the algorithms only.

Each method's round reads top to bottom in one module: ar.py, sd.py, lookup.py (prompt lookup
with the target alone) and tree.py (SpecBranch's serial execution: one token tree per round),
each a plan -> target forward -> settle round (`base.py`); parallel.py is the round PEARL and
SpecBranch share when draft and target run at once (their policies in branch_policies.py, the
draft side in drafter.py). Helpers: proposer.py (the draft-free proposer seam), tree_round.py
(a tree round's state), tree_draft.py (the draft's children and how many pay) and
tree_lookup.py (prompt lookup's tries in trees). Nothing here spawns processes, loads models,
runs the cost probe or reads predictor files: `specbranch.runtime` assembles decoders from
these parts on the backends it chooses, and its registry (`specbranch.runtime.methods`) names
the methods.
"""

from __future__ import annotations

from specbranch.decoders.base import Decoder

__all__ = ["Decoder"]
