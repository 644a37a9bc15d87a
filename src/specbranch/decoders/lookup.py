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

`PromptLookup` is the rule as a proposer (`decoders.proposer`). `LookupDecoder` (`--method
lookup`) runs it alone with the target: no draft model. `matches` feeds the gates
(`estimators.AcceptanceRate`) by which `sd` and SpecBranch's trees (`--lookup auto`) decide how
much of the candidates to verify.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specbranch.backends.base import Backend, Feed, KVSequence
from specbranch.config import SamplingParams
from specbranch.decoders.base import PlanSteps, Request, SerialDecoder, room
from specbranch.decoders.proposer import Proposer
from specbranch.metrics import LOOKUP, RoundStats
from specbranch.sampling import process_logits
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


@dataclass(frozen=True)
class PromptLookup:
    """Prompt lookup as a `Proposer` (`decoders.proposer`): the rule above, suffixes of up to
    `max_ngram` tokens."""

    max_ngram: int = MAX_NGRAM

    def continuations(self, context: list[int], num_tokens: int, count: int) -> list[list[int]]:
        return lookup_continuations(context, self.max_ngram, num_tokens, count)


PROMPT_LOOKUP = PromptLookup()  # the default proposer


@dataclass
class LookupProposal:
    """A lookup round: the candidates verified and the target forward over them."""

    feed: Feed
    tokens: list[int]


class LookupDecoder(SerialDecoder):
    """A proposer's candidates verified by the target alone with rule 2 (default: prompt lookup).

    max_length: the context window; the candidates are cut so no position exceeds it.
    """

    def __init__(self, target: Backend, max_length: int, proposer: Proposer = PROMPT_LOOKUP) -> None:
        self.target, self.max_length, self.proposer = target, max_length, proposer

    def start(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> Request:
        return Request(prompt_ids, sampling, seed, KVSequence(self.target))

    def plan(self, request: Request, budget: int) -> PlanSteps:
        yield from ()  # no draft forward
        n = min(NUM_TOKENS, room(request, budget, self.max_length))
        found = self.proposer.continuations(request.seq, n, 1)
        tokens = found[0] if found else []
        return LookupProposal(request.target.linear_feed(request.seq + tokens, len(tokens) + 1), tokens)

    def settle(self, request: Request, proposal: LookupProposal, logits: torch.Tensor) -> RoundStats:
        tokens = proposal.tokens
        p = process_logits(logits, request.sampling)  # [n+1, V]
        accepted, nxt = verify_deterministic_block(p, tokens, request.verify_gen)
        tests = block_tests(accepted, len(tokens), sampled=False)
        stats = RoundStats.block(tokens, accepted, nxt, [LOOKUP] * len(tokens), tests)
        request.seq.extend(stats.committed)
        return stats
