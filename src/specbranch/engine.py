"""The generation driver: one API for every method.

`Engine(pair, method)` binds a decoding method to a model pair (spawning workers when the
method has them); `Engine.stream(prompt, config)` runs the rounds, applies the stop conditions
(EOS, token budget, stop strings) to the committed tokens, and yields text as it is committed;
`Engine.generate` returns the whole result with its metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from specbranch.backends.base import Feed
from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.decoders import Decoder
from specbranch.decoders.base import PlanSteps, Proposal, Request
from specbranch.errors import SpecBranchError
from specbranch.metrics import GenerationMetrics, RoundStats
from specbranch.models import ModelPair
from specbranch.models.pair import pair_on
from specbranch.runtime import build_decoder
from specbranch.runtime.backends import pair_backends

Prompt = str | Sequence[int] | Sequence[dict]
T = TypeVar("T")
ROUND_CELLS = 64  # cache cells a round's speculative tokens may hold beyond the committed ones


@dataclass
class GenerationResult:
    """A finished generation.

    text: the generated text (stop string and special tokens removed);
    token_ids: the generated token ids (up to and including EOS or the stop string's last token);
    finish_reason: "stop" (EOS or stop string) or "length" (token budget or context window);
    origins: where each token came from (`metrics.ORIGINS`: draft, branch, lookup, target).
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    metrics: GenerationMetrics
    origins: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "origins": self.origins,
            "metrics": self.metrics.to_dict(),
        }


@dataclass
class Chunk:
    """What one round committed: the new text (may be empty while held back), token ids and
    their origins (`metrics.ORIGINS`).

    result is set on the last chunk only.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    result: GenerationResult | None = None


def encode_prompt(pair: ModelPair, prompt: Prompt, chat: bool = False) -> list[int]:
    """Token ids of a prompt: text (optionally wrapped in the chat template), chat messages, or ids."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], dict)):
        if pair.tokenizer is None:
            raise SpecBranchError("this model pair has no tokenizer; pass token ids")
        if isinstance(prompt, str) and not prompt:
            raise SpecBranchError("the prompt is empty")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if chat or not isinstance(prompt, str):
            if not getattr(pair.tokenizer, "chat_template", None):
                raise SpecBranchError("this tokenizer has no chat template; run without --chat")
            ids = pair.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        else:
            ids = pair.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    else:
        ids = [int(t) for t in prompt]
    if not ids:
        raise SpecBranchError("the prompt is empty")
    if any(t < 0 or t >= pair.vocab_size for t in ids):
        raise SpecBranchError(f"prompt token ids must lie in [0, {pair.vocab_size})")
    if len(ids) >= pair.max_length:
        raise SpecBranchError(
            f"the prompt has {len(ids)} tokens but the context window is {pair.max_length} tokens"
        )
    return list(ids)


def token_budget(pair: ModelPair, prompt_ids: list[int], config: GenerationConfig) -> int:
    """The new tokens a generation may make: max_new_tokens, within the context window."""
    return min(config.max_new_tokens, pair.max_length - len(prompt_ids))


class _TextTracker:
    """Incremental detokenization with stop strings.

    Text is released only when it can no longer change: not ending in an incomplete UTF-8
    sequence and not ending in a prefix of a stop string.
    """

    def __init__(self, pair: ModelPair, stop: Sequence[str]) -> None:
        self.tokenizer = pair.tokenizer
        self.stop = list(stop)
        self.emitted = 0
        self.text = ""

    def update(self, token_ids: list[int]) -> bool:
        """Decode the tokens so far; True when a stop string now appears (text cut before it)."""
        if self.tokenizer is None:
            return False
        self.text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        cuts = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        if cuts:
            self.text = self.text[: min(cuts)]
            return True
        return False

    def release(self, final: bool) -> str:
        """Text not yet handed out that is safe to hand out now."""
        end = len(self.text)
        if not final:
            while end > self.emitted and self.text[end - 1] == "\ufffd":
                end -= 1
            for s in self.stop:
                for k in range(min(len(s) - 1, end), 0, -1):
                    if self.text[:end].endswith(s[:k]):
                        end = min(end, len(self.text[:end]) - k)
                        break
        end = max(end, self.emitted)
        out, self.emitted = self.text[self.emitted : end], end
        return out


class Generation:
    """One request being generated: its decoder `request`, the stop conditions (EOS, the token
    budget, stop strings) and what it has committed so far. The driver runs the request's rounds
    (`Engine.stream`: one at a time; `Engine.advance`: several generations' rounds together) and
    hands each round's statistics to `absorb`.

    budget: the new tokens it may make (max_new_tokens within the context window); remaining:
    those still wanted; done: it has finished (its last chunk carried the result).
    """

    def __init__(
        self, pair: ModelPair, decoder: Decoder, prompt_ids: list[int], config: GenerationConfig
    ) -> None:
        self.pair, self.decoder, self.prompt_ids, self.config = pair, decoder, prompt_ids, config
        self.budget = token_budget(pair, prompt_ids, config)
        self.eos = frozenset() if config.ignore_eos else pair.eos_ids
        self.metrics = GenerationMetrics()
        self.tracker = _TextTracker(pair, config.stop)
        self.new: list[int] = []
        self.origins: list[str] = []
        self.finish: str | None = None
        self.start = time.perf_counter()
        self.request = decoder.start(prompt_ids, config.sampling, config.seed)

    @property
    def remaining(self) -> int:
        return self.budget - len(self.new)

    @property
    def done(self) -> bool:
        return self.finish is not None

    def absorb(self, stats: RoundStats) -> Chunk:
        """Take a round's committed tokens up to the first stop condition; the chunk they make
        (with the result once the generation finished)."""
        chunk: list[int] = []
        for token, origin in zip(stats.committed, stats.origins, strict=True):
            chunk.append(token)
            self.new.append(token)
            self.origins.append(origin)
            if token in self.eos or (self.config.stop and self.tracker.update(self.new)):
                self.finish = "stop"
            elif len(self.new) >= self.budget:
                self.finish = "length"
            if self.finish:
                break
        self.metrics.add_round(stats, len(chunk))
        if not self.config.stop:
            self.tracker.update(self.new)
        origins = self.origins[len(self.new) - len(chunk) :]
        if self.finish is None:
            return Chunk(self.tracker.release(final=False), chunk, origins)
        metrics = self.metrics
        metrics.wall_seconds = time.perf_counter() - self.start
        metrics.new_tokens = len(self.new)
        self.decoder.report(self.request, metrics)
        result = GenerationResult(
            self.tracker.text, self.new, self.finish, len(self.prompt_ids), metrics, self.origins
        )
        return Chunk(self.tracker.release(final=True), chunk, origins, result)


def run_rounds(generations: list[Generation]) -> list[Chunk | Exception]:
    """One round of each generation, what it made: its chunk, or the exception that ended it.

    Generations whose decoders plan their rounds (`plans_rounds`) plan in lockstep (each draft
    forward one forward per backend over every plan's feed, `_plan_together`), one target
    forward per backend runs all their target feeds (one batch on a backend with the `batching`
    capability), and each settles on its own rows; the others run their rounds one after the
    other. Generations of different engines (methods) on the same backend share its forwards.
    A failure in one generation's plan or settle ends that generation only.
    """
    out: list = [None] * len(generations)
    plans: dict[int, PlanSteps] = {}
    for i, g in enumerate(generations):
        if not g.decoder.plans_rounds or len(generations) == 1:
            g.request.mates = g.request.drafting_mates = 0
            out[i] = _guarded(lambda g=g: g.absorb(g.decoder.step(g.request, g.remaining)))
        else:
            plans[i] = g.decoder.plan(g.request, g.remaining)
    groups: dict[int, list[tuple[int, Proposal]]] = {}  # by target backend: (index, proposal)
    proposals, drafted = _plan_together(plans, {i: generations[i].request for i in plans})
    for i, proposal in proposals.items():
        if isinstance(proposal, Exception):
            out[i] = proposal
        else:
            groups.setdefault(id(generations[i].request.target.backend), []).append((i, proposal))
    for planned in groups.values():
        at = [i for i, _ in planned]
        _forward_and_settle([generations[i] for i in at], [p for _, p in planned], at, out)
        for i in at:  # for the next round's controller: how many shared its forwards
            request = generations[i].request
            request.mates = len(at) - 1
            backend = id(request.draft.backend) if request.draft else None
            request.drafting_mates = sum(drafted.get(j) == backend for j in at if j != i)
    return out


def _plan_together(
    plans: dict[int, PlanSteps], requests: dict[int, Request]
) -> tuple[dict[int, Proposal | Exception], dict[int, int]]:
    """Run plans in lockstep: at each step every plan still running has yielded its next draft
    feed, and one forward per backend runs them all. Each plan's proposal, or the exception that
    ended it (a failed forward ends the plans that fed it); and for each plan that ran draft
    forwards, the id of their backend. Before a plan goes on past a level, its request's
    `drafting_mates` says how many others rode in that level's forward: whether one more level
    is worth it is priced at the share of a forward it would have then (alone, its whole cost)."""
    done: dict[int, Proposal | Exception] = {}
    waiting: dict[int, Feed] = {}  # each running plan's next feed
    drafted: dict[int, int] = {}
    for i, steps in plans.items():
        _resume(i, steps, None, waiting, done)
    while waiting:
        groups: dict[int, list[int]] = {}  # by backend: the plans whose feeds run there
        for i, feed in waiting.items():
            drafted[i] = id(feed.seq.backend)
            groups.setdefault(drafted[i], []).append(i)
        for at in groups.values():
            feeds = [waiting.pop(i) for i in at]
            logits = _guarded(lambda feeds=feeds: feeds[0].seq.backend.forward(feeds))
            for k, i in enumerate(at):
                if isinstance(logits, Exception):
                    plans[i].close()
                    done[i] = logits
                else:
                    requests[i].drafting_mates = len(at) - 1
                    _resume(i, plans[i], logits[k], waiting, done)
    return done, drafted


def _resume(
    i: int, steps: PlanSteps, logits: torch.Tensor | None, waiting: dict[int, Feed], done: dict
) -> None:
    """Send plan i its last feed's logits (None: start it); its next feed goes to `waiting`,
    or its proposal (or the exception it raised) to `done`."""
    try:
        waiting[i] = steps.send(logits)
    except StopIteration as finished:
        done[i] = finished.value
    except Exception as exc:
        done[i] = exc


def _forward_and_settle(
    generations: list[Generation], proposals: list[Proposal], at: list[int], out: list
) -> None:
    """One target forward over the proposals' feeds (one backend), then each generation's
    settle; what each made goes to out[at[k]]."""
    backend = generations[0].request.target.backend
    logits = _guarded(lambda: backend.forward([p.feed for p in proposals]))
    for k, (g, proposal) in enumerate(zip(generations, proposals, strict=True)):
        if isinstance(logits, Exception):
            out[at[k]] = logits
        else:
            settle = g.decoder.settle
            out[at[k]] = _guarded(lambda g=g, s=settle, p=proposal, x=logits[k]: g.absorb(s(g.request, p, x)))


def _guarded(work: Callable[[], T]) -> T | Exception:
    """work's value, or the exception it raised (one generation's failure, kept apart)."""
    try:
        return work()
    except Exception as exc:
        return exc


class Engine:
    """A decoding method bound to a model pair.

    method: a name in the method registry (`specbranch.runtime.METHODS`: ar, sd, lookup, pearl,
    specbranch). spec: speculative knobs; backend: "torch" or "llama.cpp" to run the pair's models
    on another backend than they were loaded for (`models.pair.pair_on`; None: theirs); options:
    method-specific extras passed to the decoder.
    """

    def __init__(
        self,
        pair: ModelPair,
        method: str = "sd",
        spec: SpeculativeConfig | None = None,
        backend: str | None = None,
        **options: object,
    ) -> None:
        pair = pair_on(pair, backend) if backend else pair
        self.pair = pair
        self.method = method
        self.decoder = build_decoder(pair, method, spec or SpeculativeConfig(), **options)

    @classmethod
    def from_decoder(cls, pair: ModelPair, method: str, decoder: Decoder) -> Engine:
        """An engine around an already-built decoder (e.g. one with an H-RAD label recorder)."""
        engine = cls.__new__(cls)
        engine.pair, engine.method, engine.decoder = pair, method, decoder
        return engine

    def close(self) -> None:
        """Stop workers, if the method has any."""
        self.decoder.close()

    def alive(self) -> bool:
        """False once a worker process of this engine has died (rebuild the engine then)."""
        return self.decoder.alive()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin(self, prompt: Prompt, config: GenerationConfig | None = None, chat: bool = False) -> Generation:
        """A new generation of the prompt: its decoder request started, no round run yet."""
        config = config or GenerationConfig()
        return Generation(self.pair, self.decoder, encode_prompt(self.pair, prompt, chat), config)

    def stream(
        self, prompt: Prompt, config: GenerationConfig | None = None, chat: bool = False
    ) -> Iterator[Chunk]:
        """Generate, yielding each round's committed text; the last chunk carries the result."""
        generation = self.begin(prompt, config, chat)
        while not generation.done:
            yield generation.absorb(self.decoder.step(generation.request, generation.remaining))

    def fits(self, generations: list[Generation], prompt_ids: list[int], config: GenerationConfig) -> bool:
        """Whether a new generation of prompt_ids fits beside `generations` in every backend
        with a bounded cache (`Backend.capacity`): each may hold its prompt, its budget and a
        round's tree (`ROUND_CELLS`)."""
        need = len(prompt_ids) + token_budget(self.pair, prompt_ids, config) + ROUND_CELLS
        held = sum(len(g.prompt_ids) + g.budget + ROUND_CELLS for g in generations)
        backends = pair_backends(self.pair)
        return all(b is None or b.capacity is None or held + need <= b.capacity for b in backends)

    def advance(self, generations: list[Generation]) -> list[Chunk | Exception]:
        """One round of each of this engine's generations, batched (`run_rounds`)."""
        return run_rounds(generations)

    def generate(
        self, prompt: Prompt, config: GenerationConfig | None = None, chat: bool = False
    ) -> GenerationResult:
        """Generate to completion."""
        for chunk in self.stream(prompt, config, chat):
            if chunk.result is not None:
                return chunk.result
        raise AssertionError("stream ended without a result")


def generate(
    pair: ModelPair,
    prompt: Prompt,
    method: str = "sd",
    config: GenerationConfig | None = None,
    spec: SpeculativeConfig | None = None,
    chat: bool = False,
    **options: object,
) -> GenerationResult:
    """One-shot convenience: build an engine, generate, close it."""
    with Engine(pair, method, spec, **options) as engine:
        return engine.generate(prompt, config, chat)
