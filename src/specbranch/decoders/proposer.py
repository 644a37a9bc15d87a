"""Draft-free proposers: candidate tokens that cost no model forward.

A `Proposer` guesses continuations of the committed context, the likeliest first. Prompt lookup
(`decoders/lookup.py`: what followed the context's last tokens where they occurred before) is
one; an n-gram index over earlier answers would be another: one new module with a class that
implements `continuations`, handed to the decoders where `runtime.assembly` builds them.

The draft model is the other kind of proposer: it proposes a tree node's children from its
distributions (`decoders/tree_draft.py`) after a forward that also shows it the draft-free
candidates (`decoders/tree_lookup.py`), so copied tokens cost it no step.

Candidates are deterministic: verified by rule 2 alone (`--method lookup`) or in SD's block
(point masses beside sampled drafts), or as deterministic tree nodes (rule 3, or the mixed rule
beside sampled children). Whatever a proposer proposes, the output stays exactly the target's;
only speed depends on how often its candidates are accepted.
"""

from __future__ import annotations

from typing import Protocol


class Proposer(Protocol):
    """Continuations of a context (see the module docstring)."""

    def continuations(self, context: list[int], num_tokens: int, count: int) -> list[list[int]]:
        """Up to `count` distinct continuations of `context`, each at most `num_tokens` long,
        the likeliest first ([] when it has nothing to propose)."""
