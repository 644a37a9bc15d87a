"""Prompt lookup: draft-free candidates copied from the context.

Much real use of a code model copies from its input (editing a function, renaming, answering
from a pasted document), so the next tokens are often a span the context already holds. The
rule, as transformers' prompt-lookup decoding (`generate(prompt_lookup_num_tokens=...)`, after
Saxena 2023) and llama.cpp's n-gram lookup:

  take the last n tokens of the context (prompt + generated), n from `max_ngram` down to 1
  (longest first: a longer match predicts better); find their most recent earlier occurrence
  (recent text is the likelier to be continued; transformers takes the earliest); propose the
  tokens that followed it, at most `num_tokens`. No occurrence at any n: no candidates.

The candidates depend on the committed context only, so they are fixed before verification;
they are deterministic drafts, verified by rule 2 at any temperature (draw y ~ p, accept the
candidate if y equals it), which keeps the output exactly the target's.

`LookupDecoder` (`--method lookup`) runs lookup alone with the target: no draft model.
`AcceptanceRate` and `matches` are the gate by which `sd` and SpecBranch's trees (`--lookup
auto`) decide how much of the candidates to verify.
"""

from __future__ import annotations

from dataclasses import dataclass

from specbranch.config import SamplingParams
from specbranch.decoders.base import InProcessDecoder
from specbranch.metrics import LOOKUP, GenerationMetrics, RoundStats
from specbranch.runner import CachedModel
from specbranch.sampling import make_generator, process_logits
from specbranch.verify import block_tests, verify_deterministic_block

MAX_NGRAM = 3  # the longest context suffix looked up
NUM_TOKENS = 10  # the most tokens proposed per round (transformers' usual prompt_lookup_num_tokens)


def lookup_candidates(
    context: list[int], max_ngram: int = MAX_NGRAM, num_tokens: int = NUM_TOKENS
) -> list[int]:
    """The continuation of the most recent earlier occurrence of the context's longest suffix
    (n = max_ngram down to 1) that has one; [] when none does."""
    found = lookup_continuations(context, max_ngram, num_tokens, 1)
    return found[0] if found else []


def lookup_continuations(
    context: list[int], max_ngram: int = MAX_NGRAM, num_tokens: int = NUM_TOKENS, count: int = 1
) -> list[list[int]]:
    """Up to `count` distinct continuations, in the order of the rule above: the longest
    suffix first and, for one suffix, the most recent occurrence first (the first is
    `lookup_candidates`'). Later ones are the alternatives where the likeliest copy is wrong
    (the same few tokens continue differently in different places: an identifier renamed in
    one of them, a call beside a definition); a tree verifies them side by side."""
    found: list[list[int]] = []
    for n in range(min(max_ngram, len(context) - 1), 0, -1):
        suffix = context[-n:]
        for start in range(len(context) - n - 1, -1, -1):  # earlier occurrences, most recent first
            if context[start : start + n] == suffix:
                continuation = context[start + n : start + n + num_tokens]
                if continuation not in found:
                    found.append(continuation)
                if len(found) == count:
                    return found
    return found


def matches(candidates: list[int], committed: list[int]) -> tuple[int, int]:
    """(tests, hits) of the candidates a round began with against the tokens it committed,
    whether or not they were verified: hits = the length of their common prefix, tests = hits
    plus the first mismatch (when there was a committed token to compare).

    The committed token at a position is distributed as the target's p there (exactness), so
    "candidate == committed" is distributed exactly as rule 2's acceptance of the candidate:
    the gate learns lookup's acceptance even in rounds that spent nothing on it.
    """
    hits = 0
    for candidate, token in zip(candidates, committed, strict=False):
        if candidate != token:
            return hits + 1, hits
        hits += 1
    return hits, hits


@dataclass
class AcceptanceRate:
    """A per-token acceptance probability learnt in a request: `tests` positions tested, `hits`
    accepted, both decaying by `decay` per round so the estimate follows the text (code, prose);
    rate = (hits + 1) / (tests + 2) (one prior success and failure)."""

    tests: float = 0.0
    hits: float = 0.0
    decay: float = 0.9

    @property
    def rate(self) -> float:
        return (self.hits + 1.0) / (self.tests + 2.0)

    def learn(self, tests: int, hits: int) -> None:
        """One round's tests and hits."""
        self.tests = self.decay * self.tests + tests
        self.hits = self.decay * self.hits + hits


class LookupDecoder(InProcessDecoder):
    """Prompt lookup with the target alone: propose from the context, verify with rule 2.

    max_length: the context window; the candidates are cut so no position exceeds it.
    """

    def __init__(self, target: CachedModel, max_length: int) -> None:
        self.target, self.max_length = target, max_length

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        self.target.reset()
        self.sampling = sampling
        self.generator = make_generator(seed, "verify")

    def step(self, seq: list[int], budget: int) -> RoundStats:
        # The target emits one token beyond the candidates; no position may pass the window.
        room = max(0, min(NUM_TOKENS, budget - 1, self.max_length - len(seq) - 1))
        tokens = lookup_candidates(seq)[:room]
        p = process_logits(self.target.logits_for(seq + tokens, len(tokens) + 1), self.sampling)  # [n+1, V]
        accepted, nxt = verify_deterministic_block(p, tokens, self.generator)
        tests = block_tests(accepted, len(tokens), sampled=False)
        return RoundStats.block(tokens, accepted, nxt, [LOOKUP] * len(tokens), tests)

    def report(self, metrics: GenerationMetrics) -> None:
        metrics.target_busy_seconds = self.target.busy_seconds
