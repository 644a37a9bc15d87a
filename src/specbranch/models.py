"""Loading causal LMs and their tokenizers: local folders, GGUF files, hub ids, built-ins.

- A local folder loads with `from_pretrained(..., local_files_only=True)`.
- A `.gguf` file is dequantized once by transformers' GGUF loader, then saved as a safetensors
  folder in the cache (`SPECBRANCH_CACHE`, default `~/.cache/specbranch`); later loads read that
  folder in seconds.
- A hub id ("org/name") loads from the local Hugging Face cache only, unless the caller allows
  downloads (`allow_download=True`, CLI `--allow-download`): no silent network call.
- `builtin:NAME` names a model shipped by a pip package (see `builtin.py`).

`ModelPair` binds a target and a draft after checking that they share a vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from specbranch.errors import SpecBranchError

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def cache_dir() -> Path:
    """Where converted models live: $SPECBRANCH_CACHE or ~/.cache/specbranch."""
    root = os.environ.get("SPECBRANCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "specbranch"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16; Linux only).

    There bfloat16 weights halve the bytes read per token and the bf16 kernels stay fast for
    the few-token forwards of verification, while float32 matrix products over 2..16 tokens
    cost about twice a 1-token one. Measured on a 2-core AVX512-BF16 VM with the built-in
    1.5B target: one forward 0.20 s in bf16 vs 0.39 s in fp32, 8 tokens 0.22 s vs 0.78 s.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """A torch dtype from a name.

    Default ("auto"): bfloat16 on CUDA and on CPUs with native bf16 arithmetic
    (`cpu_has_native_bf16`), float32 on other CPUs.
    """
    if dtype is None or dtype == "auto":
        fast_bf16 = device.startswith("cuda") or cpu_has_native_bf16()
        return torch.bfloat16 if fast_bf16 else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise SpecBranchError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_device(device: str) -> None:
    """Fail clearly when a CUDA device is asked for and not present."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecBranchError(f"device {device!r} requested but CUDA is not available on this machine")


def gguf_to_folder(gguf_path: Path, key: str | None = None) -> Path:
    """Convert a GGUF file to a safetensors folder in the cache (once) and return the folder.

    key names the cache entry; by default it is derived from the file's path, size and mtime.
    The folder appears atomically, so an interrupted conversion leaves nothing half-written.
    """
    if key is None:
        stat = gguf_path.stat()
        digest = hashlib.sha256(
            f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        ).hexdigest()
        key = f"{gguf_path.stem}-{digest[:16]}"
    target = cache_dir() / "converted" / key
    if (target / "config.json").exists():
        drop_gguf_quantization_config(target / "config.json")
        return target
    log.warning("converting %s to safetensors (once; this takes a while)", gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # save_pretrained refuses GGUF-loaded models: rebuild from the config, then save.
    fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        drop_gguf_quantization_config(tmp / "config.json")  # the weights are plain now
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def drop_gguf_quantization_config(config_path: Path) -> None:
    """Remove a stale GGUF `quantization_config` from a converted folder's config.json.

    Folders converted by earlier versions kept it; transformers then warns, wrongly, that
    packed GGUF weights compute in float32 whenever another dtype is asked for.
    """
    config = json.loads(config_path.read_text())
    if config.get("quantization_config", {}).get("quant_method") != "gguf":
        return
    del config["quantization_config"]
    tmp = config_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(config_path)


def resolve_source(spec: str) -> tuple[Path | str, bool]:
    """Where a model spec points: (local folder, True) or (hub id, False)."""
    from specbranch.builtin import builtin_model_folder

    if spec.startswith("builtin:"):
        return builtin_model_folder(spec.removeprefix("builtin:")), True
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return gguf_to_folder(path), True
    if path.is_dir():
        if not (path / "config.json").exists():
            raise SpecBranchError(f"{spec}: folder has no config.json; not a Hugging Face model folder")
        return path, True
    if path.exists():
        raise SpecBranchError(f"{spec}: not a model folder or a .gguf file")
    looks_like_hub_id = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise SpecBranchError(f"model path does not exist: {spec}")
    return spec, False


def load_model(
    spec: str,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    quantize: str | None = None,
    allow_download: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) from a folder, a .gguf file, `builtin:NAME` or a hub id.

    quantize: None or "int8" (dynamic per-channel int8 of Linear layers, CPU only). Use it for
    the draft only: a quantized target's numerics depend on how many tokens a forward holds.
    "auto" means int8 on CPU and none on CUDA. An int8 model is loaded in float32 (what its
    quantized layers compute in), whatever `dtype` says.
    """
    check_device(device)
    if quantize == "auto":
        quantize = "int8" if device == "cpu" else None
    if quantize not in (None, "int8"):
        raise SpecBranchError(f"unknown quantization {quantize!r}; only 'int8' is supported")
    # int8 dynamic quantization computes in float32 and needs float32 weights to start from.
    torch_dtype = torch.float32 if quantize == "int8" else resolve_dtype(dtype, device)
    source, local = resolve_source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=not allow_download)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, local_files_only=not allow_download
        )
    except OSError as exc:
        if local:
            raise SpecBranchError(f"could not load model from {source}: {exc}") from None
        raise SpecBranchError(
            f"{spec}: not a local path, and not in the local Hugging Face cache. "
            "Pass a local folder or .gguf file, or allow downloading with --allow-download."
        ) from None
    model.to(device).eval()
    if quantize == "int8":
        model = quantize_int8(model)
    return model, tokenizer


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """Dynamic int8 quantization (per-channel weights) of every nn.Linear, on CPU."""
    if next(model.parameters()).device.type != "cpu":
        raise SpecBranchError("int8 dynamic quantization runs on CPU only")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch marks quantized tensor creation as deprecated
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class Float32Head(torch.nn.Module):
    """An output projection computed in float32 on half-precision hidden states.

    In bfloat16 the logits themselves are rounded to 8 bits of mantissa (steps of 0.125 near
    a logit of 20), so the top two tokens often tie exactly, and which one wins then depends
    on how many tokens the forward held: greedy speculative output would drift from AR at
    those ties. Float32 logits make exact ties rare and leave only genuine near-ties.
    """

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = head.in_features, head.out_features
        self.weight = torch.nn.Parameter(head.weight.detach().float(), requires_grad=False)
        bias = head.bias
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(), requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)


def float32_logits(model: PreTrainedModel) -> PreTrainedModel:
    """Give a half-precision model a float32 output projection (see `Float32Head`)."""
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Linear) and head.weight.dtype in (torch.bfloat16, torch.float16):
        model.set_output_embeddings(Float32Head(head))
    return model


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
    from specbranch.builtin import DEFAULT_PAIR, builtin_pair

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
