"""The generation driver: one API for every method.

`Engine(pair, method)` binds a decoding method to a model pair (spawning workers when the
method has them); `Engine.stream(prompt, config)` runs the rounds, applies the stop conditions
(EOS, token budget, stop strings) to the committed tokens, and yields text as it is committed;
`Engine.generate` returns the whole result with its metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from specbranch.config import GenerationConfig, SpeculativeConfig
from specbranch.decoders import Decoder
from specbranch.errors import SpecBranchError
from specbranch.metrics import GenerationMetrics
from specbranch.models import ModelPair
from specbranch.models.pair import pair_on
from specbranch.runtime import build_decoder

Prompt = str | Sequence[int] | Sequence[dict]


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

    def stream(
        self, prompt: Prompt, config: GenerationConfig | None = None, chat: bool = False
    ) -> Iterator[Chunk]:
        """Generate, yielding each round's committed text; the last chunk carries the result."""
        config = config or GenerationConfig()
        prompt_ids = encode_prompt(self.pair, prompt, chat)
        budget = min(config.max_new_tokens, self.pair.max_length - len(prompt_ids))
        eos = frozenset() if config.ignore_eos else self.pair.eos_ids
        metrics = GenerationMetrics()
        tracker = _TextTracker(self.pair, config.stop)
        new: list[int] = []
        origins: list[str] = []
        finish = None
        start = time.perf_counter()
        request = self.decoder.start(prompt_ids, config.sampling, config.seed)
        while finish is None:
            stats = self.decoder.step(request, budget - len(new))
            chunk: list[int] = []
            for token, origin in zip(stats.committed, stats.origins, strict=True):
                chunk.append(token)
                new.append(token)
                origins.append(origin)
                if token in eos or (config.stop and tracker.update(new)):
                    finish = "stop"
                elif len(new) >= budget:
                    finish = "length"
                if finish:
                    break
            metrics.add_round(stats, len(chunk))
            if not config.stop:
                tracker.update(new)
            if finish is None:
                yield Chunk(tracker.release(final=False), chunk, origins[len(new) - len(chunk) :])
        metrics.wall_seconds = time.perf_counter() - start
        metrics.new_tokens = len(new)
        self.decoder.report(request, metrics)
        result = GenerationResult(tracker.text, new, finish, len(prompt_ids), metrics, origins)
        yield Chunk(tracker.release(final=True), chunk, origins[len(new) - len(chunk) :], result)

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
