"""Loading one causal LM and its tokenizer: local folders, GGUF files, hub ids, built-ins.

- A local folder loads with `from_pretrained(..., local_files_only=True)`.
- A `.gguf` file is converted once into the cache (`specbranch.models.cache`).
- A hub id ("org/name") loads from the local Hugging Face cache only, unless the caller allows
  downloads (`allow_download=True`, CLI `--allow-download`): no silent network call.
- `builtin:NAME` names a model shipped by a pip package (`specbranch.models.builtin`).

For the llama.cpp backend (`load_gguf`) a `.gguf` file or a built-in model loads as it is
(`models.gguf.GGUFModel`), with the tokenizer transformers reads from the file's metadata
(converted once and cached in `tokenizers/`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from specbranch.errors import SpecBranchError
from specbranch.models.builtin import builtin_gguf, builtin_model_folder
from specbranch.models.cache import cache_dir, gguf_to_folder
from specbranch.models.gguf import GGUFModel
from specbranch.models.numerics import check_device, quantize_int8, resolve_dtype


def resolve_source(spec: str) -> tuple[Path | str, bool]:
    """Where a model spec points: (local folder, True) or (hub id, False)."""
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


def gguf_path(spec: str) -> Path:
    """The GGUF file a spec names: `builtin:NAME` (assembled once into the cache) or a `.gguf`
    file; anything else is a clear error (the llama.cpp backend runs GGUF files only)."""
    if spec.startswith("builtin:"):
        return builtin_gguf(spec.removeprefix("builtin:"))
    path = Path(spec).expanduser()
    if path.suffix != ".gguf":
        raise SpecBranchError(f"{spec}: the llama.cpp backend runs .gguf files (--backend torch runs others)")
    if not path.is_file():
        raise SpecBranchError(f"model path does not exist: {spec}")
    return path


def gguf_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer in a GGUF file's metadata, as transformers reads it (cached after the first
    read, keyed by the file's name, size and modification time)."""
    stat = path.stat()
    folder = cache_dir() / "tokenizers" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (folder / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def load_gguf(spec: str, tokenizer: bool = True) -> tuple[GGUFModel, PreTrainedTokenizerBase | None]:
    """(model, tokenizer) of a GGUF spec for the llama.cpp backend (see `gguf_path`)."""
    path = gguf_path(spec)
    return GGUFModel(path), gguf_tokenizer(path) if tokenizer else None
