"""The model cache, and GGUF files converted into it.

Converted models live in `cache_dir()` (`SPECBRANCH_CACHE`, default `~/.cache/specbranch`):
a `.gguf` file is dequantized once by transformers' GGUF loader and saved as a safetensors
folder under `converted/`; later loads read that folder in seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where converted models live: $SPECBRANCH_CACHE or ~/.cache/specbranch."""
    root = os.environ.get("SPECBRANCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "specbranch"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def converted_folder(key: str) -> Path:
    """The cache folder of converted model `key`, usable when it holds a config.json."""
    return cache_dir() / "converted" / key


def cached_folder(key: str) -> Path | None:
    """The converted folder of `key` if it is complete (stale GGUF metadata dropped), else None."""
    folder = converted_folder(key)
    if not (folder / "config.json").exists():
        return None
    drop_gguf_quantization_config(folder / "config.json")
    return folder


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
    if (cached := cached_folder(key)) is not None:
        return cached
    target = converted_folder(key)
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
