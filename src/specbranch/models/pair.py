"""A target and a draft bound together: the shared vocabulary, context window and EOS ids.

`ModelPair` binds a target and a draft after checking that they share a vocabulary;
`load_pair` loads both (a built-in pair by name, or two model specs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from specbranch.errors import SpecBranchError
from specbranch.models.builtin import DEFAULT_PAIR, builtin_pair
from specbranch.models.loading import load_model
from specbranch.models.numerics import float32_logits


def logits_width(model: PreTrainedModel) -> int:
    """Number of logits the model outputs (rows of its output layer, padding included)."""
    head = model.get_output_embeddings()
    return getattr(head, "out_features", None) or model.config.vocab_size


def context_length(model: PreTrainedModel) -> int:
    """The model's context window in tokens (a large default when the config has none)."""
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
    """

    target: PreTrainedModel
    draft: PreTrainedModel | None
    tokenizer: PreTrainedTokenizerBase | None
    vocab_size: int
    max_length: int
    eos_ids: frozenset[int]
    name: str = "custom"

    @classmethod
    def from_models(
        cls,
        target: PreTrainedModel,
        draft: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        draft_tokenizer: PreTrainedTokenizerBase | None = None,
        name: str = "custom",
    ) -> ModelPair:
        """Check and bind already-loaded models (tests pass tokenizer-less tiny models)."""
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
        return cls(target, draft, tokenizer, vocab, max_length, eos_token_ids(target, tokenizer), name)


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> frozenset[int]:
    """EOS ids from the generation config and tokenizer, plus common chat end-of-turn tokens."""
    ids: set[int] = set()
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
) -> ModelPair:
    """Load a target and a draft: a built-in pair by name, or two model specs.

    With neither `pair` nor `target`, the default built-in pair is used. `draft` may be None
    for AR-only use. draft_quantize: "auto" (int8 on CPU, the measured fast choice), "int8" or None.
    """
    name = "custom"
    if target is None:
        name = pair or DEFAULT_PAIR
        target, default_draft = builtin_pair(name)
        draft = draft or default_draft
    elif pair is not None:
        raise SpecBranchError("give either --pair or --target/--draft, not both")
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
    model_pair = ModelPair.from_models(target_model, draft_model, target_tok, draft_tok or target_tok, name)
    return model_pair
