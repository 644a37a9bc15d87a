"""A target and a draft bound together: the shared vocabulary, context window and EOS ids.

`ModelPair` binds a target and a draft after checking that they share a vocabulary;
`load_pair` loads both (a built-in pair by name, or two model specs) for the backend that will
run them: transformers models for the PyTorch backend, GGUF files as they are for llama.cpp
(`resolve_backend` decides what "auto" means, in this one place).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from specbranch.errors import SpecBranchError
from specbranch.models.builtin import DEFAULT_PAIR, builtin_pair
from specbranch.models.gguf import GGUFModel
from specbranch.models.loading import load_gguf, load_model
from specbranch.models.numerics import float32_logits

BACKENDS = ("auto", "llama.cpp", "torch")
Model = PreTrainedModel | GGUFModel  # a model as a backend runs it


def logits_width(model: Model) -> int:
    """Number of logits the model outputs (rows of its output layer, padding included)."""
    if isinstance(model, GGUFModel):
        return model.n_vocab
    head = model.get_output_embeddings()
    return getattr(head, "out_features", None) or model.config.vocab_size


def context_length(model: Model) -> int:
    """The model's context window in tokens (a large default when the config has none; for a
    GGUF model the context its llama.cpp backend allocates)."""
    if isinstance(model, GGUFModel):
        return model.context
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 20


def check_vocabularies(
    target_tok: PreTrainedTokenizerBase,
    draft_tok: PreTrainedTokenizerBase,
    target_width: int,
    draft_width: int,
) -> int:
    """The shared vocabulary size, after checking draft and target can be paired.

    Identical token->id maps pass; logits widths may differ from the vocabulary only by padding
    rows (never fewer rows than tokens). Anything else raises naming both sizes.
    """
    target_vocab, draft_vocab = target_tok.get_vocab(), draft_tok.get_vocab()
    if target_vocab != draft_vocab:
        raise SpecBranchError(
            f"draft and target vocabularies differ (target {len(target_vocab)} tokens, "
            f"draft {len(draft_vocab)} tokens); speculative decoding needs the same tokenizer"
        )
    size = max(target_vocab.values()) + 1
    if min(target_width, draft_width) < size:
        raise SpecBranchError(
            f"model outputs fewer logits than the tokenizer has tokens "
            f"(target {target_width}, draft {draft_width}, vocabulary {size})"
        )
    return size


def check_vocab_widths(target_width: int, draft_width: int, vocab_size: int | None = None) -> int:
    """Shared vocabulary size for tokenizer-less pairs: the smaller logits width must cover it."""
    size = vocab_size if vocab_size is not None else min(target_width, draft_width)
    if min(target_width, draft_width) < size:
        raise SpecBranchError(
            f"draft and target vocabularies differ (target {target_width}, draft {draft_width} logits)"
        )
    return size


@dataclass
class ModelPair:
    """A target and a draft that share a vocabulary, with the tokenizer and their limits.

    vocab_size: the shared vocabulary (logits beyond it are padding and are dropped).
    max_length: the context window, the smaller of the two models'.
    eos_ids: token ids that end a generation (EOS and the chat end-of-turn token).
    backend: what runs them: "torch" (transformers models) or "llama.cpp" (`GGUFModel`s).
    source: the `load_pair` arguments it was loaded with (None: built from models), so the same
    models can be loaded for another backend (`pair_on`).
    """

    target: Model
    draft: Model | None
    tokenizer: PreTrainedTokenizerBase | None
    vocab_size: int
    max_length: int
    eos_ids: frozenset[int]
    name: str = "custom"
    backend: str = "torch"
    source: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_models(
        cls,
        target: Model,
        draft: Model | None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        draft_tokenizer: PreTrainedTokenizerBase | None = None,
        name: str = "custom",
    ) -> ModelPair:
        """Check and bind already-loaded models (tests pass tokenizer-less tiny models): both
        transformers models, or both `GGUFModel`s."""
        if draft is not None and isinstance(draft, GGUFModel) != isinstance(target, GGUFModel):
            raise SpecBranchError("draft and target must both be GGUF models or both transformers models")
        target_width = logits_width(target)
        draft_width = logits_width(draft) if draft is not None else target_width
        if tokenizer is not None and draft_tokenizer is not None:
            vocab = check_vocabularies(tokenizer, draft_tokenizer, target_width, draft_width)
        else:
            vocab = check_vocab_widths(
                target_width, draft_width, len(tokenizer) if tokenizer is not None else None
            )
        max_length = context_length(target)
        if draft is not None:
            max_length = min(max_length, context_length(draft))
        backend = "llama.cpp" if isinstance(target, GGUFModel) else "torch"
        eos = eos_token_ids(target, tokenizer)
        return cls(target, draft, tokenizer, vocab, max_length, eos, name, backend)


def eos_token_ids(model: Model, tokenizer: PreTrainedTokenizerBase | None) -> frozenset[int]:
    """EOS ids from the generation config (a GGUF model: its end-of-generation tokens) and the
    tokenizer, plus common chat end-of-turn tokens."""
    ids: set[int] = set()
    if isinstance(model, GGUFModel):
        ids.update(model.eog_ids)
    else:
        eos = getattr(model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        vocab = tokenizer.get_vocab()
        for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "<|end|>"):
            if marker in vocab:
                ids.add(vocab[marker])
    return frozenset(ids)


def load_pair(
    target: str | None = None,
    draft: str | None = None,
    *,
    pair: str | None = None,
    device: str = "cpu",
    draft_device: str | None = None,
    dtype: str | torch.dtype | None = None,
    draft_quantize: str | None = "auto",
    allow_download: bool = False,
    backend: str = "auto",
) -> ModelPair:
    """Load a target and a draft: a built-in pair by name, or two model specs.

    With neither `pair` nor `target`, the default built-in pair is used. `draft` may be None
    for AR-only use. draft_quantize (PyTorch backend): "auto" (int8 on CPU, the measured fast
    choice), "int8" or None. backend: "auto", "llama.cpp" or "torch" (`resolve_backend`).
    """
    name = "custom"
    if target is None:
        name = pair or DEFAULT_PAIR
        target, default_draft = builtin_pair(name)
        draft = draft or default_draft
    elif pair is not None:
        raise SpecBranchError("give either --pair or --target/--draft, not both")
    source = {"target": target, "draft": draft, "device": device, "draft_device": draft_device,
              "dtype": dtype, "draft_quantize": draft_quantize, "allow_download": allow_download}
    if resolve_backend(backend, [target] + ([draft] if draft else []), device, draft_device) == "llama.cpp":
        target_gguf, target_tok = load_gguf(target)
        draft_gguf = load_gguf(draft, tokenizer=False)[0] if draft is not None else None
        pair = ModelPair.from_models(target_gguf, draft_gguf, target_tok, target_tok, name)
        return replace(pair, source=source)
    target_model, target_tok = load_model(target, device=device, dtype=dtype, allow_download=allow_download)
    target_model = float32_logits(target_model)
    draft_model = draft_tok = None
    if draft is not None:
        draft_model, draft_tok = load_model(
            draft,
            device=draft_device or device,
            dtype=dtype,
            quantize=draft_quantize,
            allow_download=allow_download,
        )
    pair = ModelPair.from_models(target_model, draft_model, target_tok, draft_tok or target_tok, name)
    return replace(pair, source=source)


_TWINS: dict[tuple[int, str], ModelPair] = {}  # (id of a pair, backend) -> the same models loaded for it


def pair_on(pair: ModelPair, backend: str) -> ModelPair:
    """The pair's models loaded for `backend` ("torch" or "llama.cpp"): the pair itself when it
    runs there already, else the same specs loaded again (once; a benchmark runs peers on the
    form they need and `specbranch:backend=torch` beside the default)."""
    if backend == pair.backend:
        return pair
    if pair.source is None:
        raise SpecBranchError(f"these models were built in memory and run on {pair.backend} only")
    key = (id(pair), backend)
    if key not in _TWINS:
        _TWINS[key] = load_pair(**pair.source, backend=backend)
    return _TWINS[key]


def resolve_backend(backend: str, specs: list[str], device: str, draft_device: str | None) -> str:
    """The backend that runs models `specs` on `device`: as asked, or for "auto" llama.cpp where
    every model is a GGUF file or a built-in model and runs on the CPU (it runs the file as it
    is, several times faster there than our dequantized weights), PyTorch otherwise (Hugging
    Face folders and hub ids, CUDA)."""
    if backend not in BACKENDS:
        raise SpecBranchError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    ggufs = all(s.startswith("builtin:") or s.endswith(".gguf") for s in specs)
    cpu = device == "cpu" and draft_device in (None, "cpu")
    if backend == "llama.cpp" and not cpu:
        raise SpecBranchError("the llama.cpp backend runs on the CPU here; use --backend torch for CUDA")
    if backend != "auto":
        return backend
    return "llama.cpp" if ggufs and cpu else "torch"
