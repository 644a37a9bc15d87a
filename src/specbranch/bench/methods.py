"""Benchmark method specs (`specbranch:k_max=1`) and the runners that time one generation.

A spec is `METHOD[:NAME=VALUE,...]`; METHOD is one of `specbranch.runtime.METHODS`,
`hf-assisted` (transformers' `generate(assistant_model=...)` on the same models, its default
assisted-generation schedule), `hf-lookup` (transformers' prompt lookup,
`generate(prompt_lookup_num_tokens=...)`, the target alone), `llamacpp` (llama-cpp-python's own
generation loop, `Llama.generate`, on the target's GGUF file: plain decoding) or
`llamacpp-lookup` (the same with its prompt-lookup draft, `LlamaPromptLookupDecoding`).
The peers run on the models in the form they need (`models.pair.pair_on`: transformers ones for
`hf-*`, GGUF files for `llamacpp*`). Option names are the engine options (`ParallelConfig`
fields), `gamma`, `draft_sampling` and `draft_policy` (`SpeculativeConfig`), `backend` (what
runs the models: `specbranch:backend=torch`), and `threads` (CPU threads of the caller while
this method runs; the parallel methods otherwise use `target_threads`/`draft_threads`). Options after
`draft_policy=NAME` that are none of these belong to the policy:
`sd:draft_policy=svip,threshold=0.5` is SD with `svip:threshold=0.5`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import torch

from specbranch.config import GenerationConfig, ParallelConfig, SpeculativeConfig
from specbranch.decoders.lookup import NUM_TOKENS
from specbranch.engine import Engine
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair
from specbranch.models.pair import pair_on
from specbranch.runtime import METHODS, REGISTRY
from specbranch.specs import split_spec

HF_METHODS = ("hf-assisted", "hf-lookup")  # transformers' own generate(), timed beside ours
LLAMACPP_METHODS = ("llamacpp", "llamacpp-lookup")  # llama-cpp-python's own generation loop
BENCH_METHODS = (*METHODS, *HF_METHODS, *LLAMACPP_METHODS)
SPEC_FIELDS = tuple(f.name for f in fields(SpeculativeConfig))
KNOWN = {*SPEC_FIELDS, *(f.name for f in fields(ParallelConfig)), "threads", "backend"}  # a variant's


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


@dataclass(frozen=True)
class MethodSpec:
    """A method with option overrides; `name` is the spec as written (the report's label)."""

    name: str
    method: str
    options: dict = field(default_factory=dict)
    spec: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    threads: int | None = None


def parse_method(text: str, defaults: SpeculativeConfig | None = None) -> MethodSpec:
    """Parse `METHOD[:k=v,...]`, with clear errors for unknown methods and options."""
    method, items = split_spec(text, "method")
    if method not in BENCH_METHODS:
        choices = ", ".join(BENCH_METHODS)
        raise SpecBranchError(f"unknown method {method!r} in {text!r}; choose from {choices}")
    options: dict = {}
    for raw_key, value in items:
        key = raw_key.replace("-", "_")
        if key not in KNOWN and "draft_policy" in options:  # an option of the draft policy
            options["draft_policy"] += ("," if ":" in options["draft_policy"] else ":") + f"{raw_key}={value}"
            continue
        options[key] = value if key == "draft_policy" else _value(value)
    spec_overrides = {k: options.pop(k) for k in list(options) if k in SPEC_FIELDS}
    base = defaults or SpeculativeConfig()
    spec = SpeculativeConfig(**{**{f: getattr(base, f) for f in SPEC_FIELDS}, **spec_overrides})
    threads = options.pop("threads", None)
    allowed = (*REGISTRY[method].options, "backend") if method in REGISTRY else ()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SpecBranchError(f"method {method!r} takes no option(s) {', '.join(unknown)} (in {text!r})")
    return MethodSpec(text, method, options, spec, threads)


@dataclass
class RunRecord:
    """One timed generation."""

    token_ids: list[int]
    text: str
    wall_seconds: float
    metrics: dict | None = None  # GenerationMetrics.to_dict() for the project's methods


class EngineRunner:
    """Times the project's own methods through `Engine`."""

    def __init__(self, pair: ModelPair, spec: MethodSpec) -> None:
        options = dict(spec.options)
        backend = options.pop("backend", pair.backend)
        self.engine = Engine(pair_on(pair, backend), spec.method, spec.spec, **options)
        # Parallel engines set the caller's threads to their target share: keep that per run.
        self.threads = spec.threads or torch.get_num_threads()

    def run(self, prompt_ids: list[int], config: GenerationConfig) -> RunRecord:
        result = self.engine.generate(prompt_ids, config)
        return RunRecord(result.token_ids, result.text, result.metrics.wall_seconds, result.metrics.to_dict())

    def worker_pid(self) -> int | None:
        return self.engine.decoder.worker_pid()

    def close(self) -> None:
        self.engine.close()


class HFAssistedRunner:
    """transformers' assisted generation: `target.generate(..., assistant_model=draft)`; with
    `lookup`, its prompt lookup instead (`prompt_lookup_num_tokens`, as many candidates per
    round as our `lookup` method proposes)."""

    def __init__(self, pair: ModelPair, threads: int | None, lookup: bool = False) -> None:
        if pair.draft is None and not lookup:
            raise SpecBranchError("hf-assisted needs a draft model")
        self.pair, self.lookup = pair_on(pair, "torch"), lookup
        self.threads = threads or torch.get_num_threads()

    @torch.inference_mode()
    def run(self, prompt_ids: list[int], config: GenerationConfig) -> RunRecord:
        target = self.pair.target
        device = next(target.parameters()).device
        ids = torch.tensor([prompt_ids], device=device)
        s = config.sampling
        kwargs: dict = {"max_new_tokens": config.max_new_tokens, "do_sample": not s.greedy}
        if not s.greedy:
            kwargs.update(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        eos = sorted(self.pair.eos_ids)
        kwargs["eos_token_id"] = eos or None
        kwargs["pad_token_id"] = eos[0] if eos else 0
        if config.ignore_eos:
            kwargs["min_new_tokens"] = config.max_new_tokens
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        if self.lookup:
            kwargs["prompt_lookup_num_tokens"] = NUM_TOKENS
        else:
            kwargs["assistant_model"] = self.pair.draft
        out = target.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        wall = time.perf_counter() - start
        tokens = out[0, len(prompt_ids) :].tolist()
        text = self.pair.tokenizer.decode(tokens, skip_special_tokens=True) if self.pair.tokenizer else ""
        return RunRecord(tokens, text, wall)

    def worker_pid(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class LlamaCppRunner:
    """llama-cpp-python's own generation loop (`Llama.generate`) on the target's GGUF file, with
    the caller's threads: plain decoding, or with `lookup` its prompt-lookup draft
    (`LlamaPromptLookupDecoding`, as many candidates per round as our `lookup` method proposes).
    Sampling as ours: temperature, top-k, top-p and nothing else (min-p off); the cache is reset
    before every run, as our engine starts every request afresh."""

    def __init__(self, pair: ModelPair, threads: int | None, lookup: bool = False) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.pair = pair_on(pair, "llama.cpp")
        self.threads = threads or torch.get_num_threads()
        draft = LlamaPromptLookupDecoding(num_pred_tokens=NUM_TOKENS) if lookup else None
        self.llm = Llama(
            model_path=str(self.pair.target.path), n_ctx=self.pair.max_length, n_threads=self.threads,
            n_threads_batch=self.threads, draft_model=draft, verbose=False,
        )

    def run(self, prompt_ids: list[int], config: GenerationConfig) -> RunRecord:
        s = config.sampling
        self.llm.reset()
        self.llm.set_seed(config.seed)
        temp = 0.0 if s.greedy else s.temperature
        tokens: list[int] = []
        start = time.perf_counter()
        for token in self.llm.generate(prompt_ids, top_k=s.top_k, top_p=s.top_p, min_p=0.0, temp=temp):
            tokens.append(int(token))
            if len(tokens) >= config.max_new_tokens or (token in self.pair.eos_ids and not config.ignore_eos):
                break
        wall = time.perf_counter() - start
        text = self.pair.tokenizer.decode(tokens, skip_special_tokens=True) if self.pair.tokenizer else ""
        return RunRecord(tokens, text, wall)

    def worker_pid(self) -> int | None:
        return None

    def close(self) -> None:
        self.llm.close()


Runner = EngineRunner | HFAssistedRunner | LlamaCppRunner


def make_runner(pair: ModelPair, spec: MethodSpec) -> Runner:
    """The runner for a spec; its `threads` are the CPU threads to set before each run."""
    if spec.method in HF_METHODS:
        return HFAssistedRunner(pair, spec.threads, lookup=spec.method == "hf-lookup")
    if spec.method in LLAMACPP_METHODS:
        return LlamaCppRunner(pair, spec.threads, lookup=spec.method == "llamacpp-lookup")
    return EngineRunner(pair, spec)
