"""The measured costs of this machine and model pair (`costs.Placement`), cached per both.

Serial execution runs each model alone on the whole device: its curves are measured with the
caller's torch threads. Parallel execution runs the two at once, each on its share: on a CPU
the target on `target_threads` and the draft on `draft_threads` (half the cores each by
default), on separate devices each on its own; on one GPU the two share its compute, so the
shared curves are the full ones at twice the time (the device runs one kernel stream at a time
in the best case).

The probe takes 10-40 s on a 2-core CPU with the built-in pair, so its result is stored in the
model cache (`probes/<key>.json`) under a key naming the machine (CPU model and the flags
that set its arithmetic speed, cores, GPU, torch version), the two models (their paths,
dtypes, devices, whether quantized, the output head's kind; a GGUF model's file and backend)
and the thread counts.
Models without a path (built in memory, as the tests do) are measured every time and never
cached. A probe taken while the machine was busy (its load average per core above BUSY_LOAD
when the probe started: another job, or our own model conversion a moment before) is not
trusted for good: the next start on a quiet machine measures again. Within a run, greedy
rounds correct the curves from their timed forwards (`costs.CorrectedCurve`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from specbranch.backends.base import KVSequence
from specbranch.costs import CostCurve, Placement
from specbranch.models import ModelPair
from specbranch.models.cache import cache_dir
from specbranch.models.gguf import GGUFModel
from specbranch.models.numerics import cpu_info
from specbranch.probe import DRAFT_WIDTHS, SHARED_SIZES, TARGET_SIZES, measure_curve
from specbranch.runtime.backends import pair_backends

PLACEMENT_FIELDS = ("target", "draft", "target_shared", "draft_shared")  # costs.Placement, stored
BUSY_LOAD = 0.5  # load average per core above which a probe counts as taken on a busy machine
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "neon", "asimd")


def machine_identity() -> dict:
    """What makes forward times differ between machines."""
    cpu = cpu_info()
    name, flags = cpu.name, [f for f in CPU_FLAGS if f in cpu.flags]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": name, "flags": flags, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__}


def _model_identity(model: torch.nn.Module | GGUFModel) -> dict | None:
    if isinstance(model, GGUFModel):
        size = model.path.stat().st_size
        return {"path": str(model.path), "size": size, "backend": "llama.cpp", "context": model.context}
    path = getattr(getattr(model, "config", None), "_name_or_path", "")
    if not path:
        return None
    param = next(model.parameters())
    quantized = any("quantized" in type(m).__module__ for m in model.modules())
    head = type(model.get_output_embeddings()).__name__  # its cost is part of every forward's
    return {"path": str(path), "dtype": str(param.dtype), "device": str(param.device), "int8": quantized,
            "head": head}


def probe_key(pair: ModelPair, threads: tuple[int, int, int]) -> str | None:
    """The cache key of a pair's costs on this machine, or None when a model has no path."""
    target, draft = _model_identity(pair.target), _model_identity(pair.draft)
    if target is None or draft is None:
        return None
    identity = {"machine": machine_identity(), "target": target, "draft": draft, "threads": threads}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _measure(pair: ModelPair, threads: tuple[int, int, int]) -> Placement:
    full, target_share, draft_share = threads
    target, draft = (KVSequence(backend) for backend in pair_backends(pair))
    target_curve = measure_curve(target, TARGET_SIZES, full)
    draft_curve = measure_curve(draft, DRAFT_WIDTHS, full)
    if not draft.backend.capabilities.processes:  # no parallel mode: nothing to share
        return Placement(target_curve, draft_curve, target_curve, draft_curve)
    if target.device != draft.device:  # a device each: the parallel mode runs each on its own
        return Placement(target_curve, draft_curve, target_curve, draft_curve)
    if target.device.type == "cuda":  # one GPU shared by both
        doubled = [CostCurve(tuple((n, 2 * s) for n, s in c.points)) for c in (target_curve, draft_curve)]
        return Placement(target_curve, draft_curve, *doubled)
    return Placement(
        target_curve,
        draft_curve,
        measure_curve(target, SHARED_SIZES, target_share),
        measure_curve(draft, (1,), draft_share),
    )


def probe_dir() -> Path:
    """Where measured costs are kept: `probes/` in the model cache."""
    return cache_dir() / "probes"


def placement_costs(pair: ModelPair, target_threads: int, draft_threads: int) -> Placement:
    """The pair's measured costs on this machine (from the cache when measured before).

    target_threads / draft_threads: each model's share in the parallel mode.
    """
    threads = (torch.get_num_threads(), target_threads, draft_threads)
    key = probe_key(pair, threads)
    path = probe_dir() / f"{key}.json" if key else None
    busy = machine_busy()
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            if busy or not data.get("busy", False):  # a busy probe is retaken on a quiet machine
                return Placement(*(CostCurve.from_list(data[name]) for name in PLACEMENT_FIELDS))
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable entry is measured again and overwritten
    costs = _measure(pair, threads)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {name: getattr(costs, name).to_list() for name in PLACEMENT_FIELDS}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data | {"machine": machine_identity(), "busy": busy}, indent=1))
        tmp.replace(path)
    return costs


def machine_busy() -> bool:
    """Whether the machine is busy now: its 1-minute load average per core above BUSY_LOAD."""
    return os.getloadavg()[0] > BUSY_LOAD * (os.cpu_count() or 1)

