"""The model cache, and GGUF files converted into it.

Converted models live in `cache_dir()` (`SPECBRANCH_CACHE`, default `~/.cache/specbranch`):
a `.gguf` file is dequantized once by transformers' GGUF loader and saved as a safetensors
folder under `converted/`; later loads read that folder in seconds. A conversion shows one
progress bar of bytes (`byte_progress`, on standard error, off when that is no terminal) in
place of transformers' per-tensor one, and ends with a one-line summary of the new cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

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


def gguf_to_folder(gguf_path: Path, key: str | None = None, progress: tqdm | None = None) -> Path:
    """Convert a GGUF file to a safetensors folder in the cache (once) and return the folder.

    key names the cache entry; by default it is derived from the file's path, size and mtime.
    The folder appears atomically, so an interrupted conversion leaves nothing half-written.
    progress: the bar the conversion's bytes go to (a caller's bar of earlier steps, closed here);
    by default a new `byte_progress` bar. The cache entry's `cache_summary` follows on stderr.
    """
    if key is None:
        stat = gguf_path.stat()
        digest = hashlib.sha256(
            f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        ).hexdigest()
        key = f"{gguf_path.stem}-{digest[:16]}"
    if (cached := cached_folder(key)) is not None:
        return cached
    with progress if progress is not None else byte_progress(gguf_path.stem) as bar:
        if bar.disable:  # a drawn bar says so itself; a line in between would break it
            log.warning("converting %s to safetensors (once; this takes a while)", gguf_path.name)
        target = _convert(gguf_path, converted_folder(key), bar)
    print(cache_summary(target), file=sys.stderr)
    return target


def _convert(gguf_path: Path, target: Path, bar: tqdm) -> Path:
    """Dequantize `gguf_path` and save it as a safetensors folder at `target`, atomically."""
    with gguf_tensor_progress(bar):
        bar.set_postfix_str("reading the tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        bar.set_postfix_str("converting")
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        # save_pretrained refuses GGUF-loaded models: rebuild from the config, then save.
        fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict())
        fresh.generation_config = loaded.generation_config
        bar.set_postfix_str("saving")
        _save_atomically(fresh, tokenizer, target)
    return target


def _save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """Save model and tokenizer into a fresh folder beside `target`, then rename it to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        drop_gguf_quantization_config(tmp / "config.json")  # the weights are plain now
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def byte_progress(name: str, total: int | None = None) -> tqdm:
    """A progress bar of bytes (with rate and ETA) for model `name` on standard error.

    It is off when standard error is no terminal (`disable=None`), so logs get no bar lines.
    """
    return tqdm(
        total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, disable=None
    )


@contextmanager
def gguf_tensor_progress(bar: tqdm) -> Iterator[None]:
    """While converting, count each GGUF tensor's bytes on `bar` instead of transformers' own
    per-tensor bar (the loop over `reader.tensors` in `transformers.modeling_gguf_pytorch_utils`),
    and keep transformers' other bars (loading weights, writing shards) off.

    The bar's total becomes the bytes counted so far plus those of every tensor to come.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    def tensors(iterable, **_):
        items = list(iterable)
        bar.total = bar.n + sum(t.n_bytes for t in items)
        bar.refresh()
        for tensor in items:
            yield tensor
            bar.update(tensor.n_bytes)

    original, bars_on = gguf_utils.tqdm, hf_logging.is_progress_bar_enabled()
    gguf_utils.tqdm = tensors
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        gguf_utils.tqdm = original
        if bars_on:
            hf_logging.enable_progress_bar()


def folder_size(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def format_size(size: int) -> str:
    """`size` bytes in binary units with one decimal: 512 B, 1.5 KiB, 2.9 GiB."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def cache_summary(folder: Path) -> str:
    """One line naming a cache entry and its size, the home folder written `~`:
    `cache: ~/.cache/specbranch/converted/NAME (2.9 GiB)`."""
    home = Path.home()
    shown = f"~/{folder.relative_to(home)}" if folder.is_relative_to(home) else str(folder)
    return f"cache: {shown} ({format_size(folder_size(folder))})"
