"""The benchmark loop: every method on the same prompts, interleaved, compared with AR.

Fairness rules: models are loaded once and shared by all methods; each method runs one
untimed warm-up generation; then for every prompt and repeat all methods run back to back
(the order rotates per prompt) so that drift on a noisy machine hits every method alike.
Speedup is computed per prompt against the AR run of the same prompt (the first `ar` spec)
and summarised by its geometric mean, min and max. At temperature 0 every output is checked
against AR's; a divergence is reported with its position and the target's top-2 logit gap
there, so a numeric near-tie (tiny gap) can be told apart from a bug.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from tqdm import tqdm

from specbranch.backends.base import KVSequence
from specbranch.bench.methods import MethodSpec, Runner, RunRecord, make_runner
from specbranch.config import GenerationConfig, SamplingParams
from specbranch.datasets import BenchPrompt
from specbranch.engine import encode_prompt
from specbranch.errors import SpecBranchError
from specbranch.metrics import GenerationMetrics, summarize_runs
from specbranch.models import ModelPair
from specbranch.models.numerics import cpu_info
from specbranch.runtime.backends import pair_backends


@dataclass
class BenchConfig:
    """What to run: methods x prompts, with one sampling setting.

    placement: "shared" (every method may use every core; the parallel methods split them
    between their two processes) or "split" (each model gets its own half of the cores for
    every method, the analogue of a device per model: AR runs on the target's half; methods
    that run draft and target one after the other in one process, sd, hf-assisted and serial
    SpecBranch, run each on a half; the parallel methods as with "shared"). A variant's own
    `threads` wins over both. baseline: the spec speedups and greedy checks are against (None:
    the first `ar`).
    """

    methods: list[MethodSpec]
    prompts: list[BenchPrompt]
    max_new_tokens: int = 128
    sampling: SamplingParams = field(default_factory=SamplingParams)
    repeats: int = 1
    chat: bool = False
    seed: int = 0
    ignore_eos: bool = False
    placement: str = "shared"
    baseline: str | None = None


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory (VmHWM) of a process in MiB; 0 when unknown."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_info() -> dict:
    """CPU, cores, threads, library versions and the git commit, for results.json."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu_info().name,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git_commit": commit or None,
    }


def top2_gap(pair: ModelPair, prefix: list[int]) -> float:
    """The target's top-1 minus top-2 logit after `prefix` (small = a numeric near-tie), on the
    pair's own backend."""
    logits = KVSequence(pair_backends(pair)[0]).logits_for(prefix, 1)[0]
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


def _run_one(runner: Runner, prompt_ids: list[int], config: GenerationConfig) -> RunRecord:
    torch.set_num_threads(runner.threads)
    return runner.run(prompt_ids, config)


PLACEMENTS = ("shared", "split")


def placement_threads(placement: str, cores: int) -> int:
    """Torch threads an in-process method runs on: all `cores`, or (split) one model's half."""
    if placement not in PLACEMENTS:
        raise SpecBranchError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    return cores if placement == "shared" else max(1, cores // 2)


def run_bench(pair: ModelPair, bench: BenchConfig, progress: bool = True) -> dict:
    """Run the benchmark; returns the results dict that `report.write_outputs` writes."""
    machine = machine_info()  # at the start: the code that runs, not what is checked out at the end
    default_threads = torch.get_num_threads()
    runners: dict[str, Runner] = {}
    try:
        for spec in bench.methods:  # into `runners` one by one, so a failure closes those made
            torch.set_num_threads(placement_threads(bench.placement, default_threads))
            runners[spec.name] = make_runner(pair, spec)
        _warm_up(pair, bench, runners)
        baseline = bench.baseline or next((s.name for s in bench.methods if s.method == "ar"), None)
        records = _run_prompts(pair, bench, runners, baseline, progress)
        memory = {
            name: peak_rss_mb() + (peak_rss_mb(r.worker_pid()) if r.worker_pid() else 0.0)
            for name, r in runners.items()
        }
    finally:
        torch.set_num_threads(default_threads)
        for runner in runners.values():
            runner.close()
    datasets = sorted({p.dataset for p in bench.prompts})
    return {
        "config": _config_dict(pair, bench, baseline),
        "machine": machine,
        "summary": summarize(records, bench.methods, memory),
        "per_dataset": {
            dataset: summarize([r for r in records if r["dataset"] == dataset], bench.methods, memory)
            for dataset in datasets
        },
        "records": records,
    }


def _warm_up(pair: ModelPair, bench: BenchConfig, runners: dict[str, Runner]) -> None:
    """One short untimed generation per method."""
    warmup_ids = encode_prompt(pair, bench.prompts[0].text, bench.chat)[:16]
    warmup = GenerationConfig(4, bench.sampling, ignore_eos=True)
    for spec in bench.methods:
        _run_one(runners[spec.name], warmup_ids, warmup)


def _run_prompts(
    pair: ModelPair, bench: BenchConfig, runners: dict[str, Runner], baseline: str | None, progress: bool
) -> list[dict]:
    """Every prompt x repeat x method, the method order rotated per prompt; the prompt records."""
    records = []
    bar = tqdm(total=len(bench.prompts) * bench.repeats * len(bench.methods), desc="bench", unit="run",
               disable=not progress)
    for index, prompt in enumerate(bench.prompts):
        prompt_ids = encode_prompt(pair, prompt.text, bench.chat)
        shift = index % len(bench.methods)
        order = bench.methods[shift:] + bench.methods[:shift]
        runs: dict[str, list[RunRecord]] = {s.name: [] for s in bench.methods}
        for repeat in range(bench.repeats):
            run_config = GenerationConfig(
                bench.max_new_tokens, bench.sampling, bench.seed + repeat, ignore_eos=bench.ignore_eos
            )
            for spec in order:
                bar.set_postfix_str(f"{prompt.dataset}/{prompt.question_id} {spec.name}")
                runs[spec.name].append(_run_one(runners[spec.name], prompt_ids, run_config))
                bar.update()
        records.extend(_prompt_records(pair, bench, prompt, prompt_ids, runs, baseline))
    bar.close()
    return records


def _config_dict(pair: ModelPair, bench: BenchConfig, baseline: str | None) -> dict:
    """The `config` section of results.json: what was run, on which pair."""
    return {
        "methods": [{"name": s.name, "method": s.method, "options": s.options,
                     "speculative": asdict(s.spec), "threads": s.threads} for s in bench.methods],
        "datasets": sorted({p.dataset for p in bench.prompts}),
        "num_prompts": len(bench.prompts),
        "max_new_tokens": bench.max_new_tokens,
        "sampling": asdict(bench.sampling),
        "repeats": bench.repeats,
        "chat": bench.chat,
        "seed": bench.seed,
        "ignore_eos": bench.ignore_eos,
        "placement": bench.placement,
        "baseline": baseline,
        "model_pair": pair.name,
        "backend": pair.backend,
        "target_dtype": str(getattr(pair.target, "dtype", "gguf")).removeprefix("torch."),
    }


def _prompt_records(
    pair: ModelPair,
    bench: BenchConfig,
    prompt: BenchPrompt,
    prompt_ids: list[int],
    runs: dict[str, list[RunRecord]],
    baseline: str | None,
) -> list[dict]:
    """One record per method for one prompt, with speedup and greedy equality vs the baseline."""
    def tps(record: RunRecord) -> float:
        return len(record.token_ids) / record.wall_seconds if record.wall_seconds else 0.0

    base_tps = statistics.mean(tps(r) for r in runs[baseline]) if baseline else None
    reference = runs[baseline][0].token_ids if baseline else None
    out = []
    for name, repeats in runs.items():
        mean_tps = statistics.mean(tps(r) for r in repeats)
        tokens = repeats[0].token_ids
        equal, divergence = None, None
        if reference is not None and bench.sampling.greedy:
            equal = tokens == reference
            if not equal:
                pairs = enumerate(zip(tokens, reference, strict=False))
                pos = next((i for i, (a, b) in pairs if a != b), min(len(tokens), len(reference)))
                gap = top2_gap(pair, prompt_ids + reference[:pos])
                divergence = {"position": pos, "target_top2_gap": gap}
        out.append({
            "method": name,
            "dataset": prompt.dataset,
            "question_id": prompt.question_id,
            "category": prompt.category,
            "prompt_tokens": len(prompt_ids),
            "text": repeats[0].text,
            "token_ids": tokens,
            "tokens_per_second": mean_tps,
            "speedup": mean_tps / base_tps if base_tps else None,
            "equal_to_ar": equal,
            "divergence": divergence,
            "runs": [
                {"wall_seconds": r.wall_seconds, "new_tokens": len(r.token_ids), "metrics": r.metrics}
                for r in repeats
            ],
        })
    return out


def summarize(records: list[dict], methods: list[MethodSpec], memory: dict[str, float]) -> dict:
    """Per-method figures over the given prompt records."""
    summary = {}
    for spec in methods:
        rows = [r for r in records if r["method"] == spec.name]
        if not rows:
            continue
        tps = [r["tokens_per_second"] for r in rows]
        speedups = [r["speedup"] for r in rows if r["speedup"]]
        equal = [r["equal_to_ar"] for r in rows if r["equal_to_ar"] is not None]
        summary[spec.name] = {
            "prompts": len(rows),
            "tokens_per_second_mean": statistics.mean(tps),
            "tokens_per_second_std": statistics.stdev(tps) if len(tps) > 1 else 0.0,
            "speedup_geomean": math.exp(statistics.mean(math.log(s) for s in speedups)) if speedups else None,
            "speedup_min": min(speedups) if speedups else None,
            "speedup_max": max(speedups) if speedups else None,
            "peak_rss_mb": memory.get(spec.name),
            "greedy_equal_to_ar": f"{sum(equal)}/{len(equal)}" if equal else None,
        } | summarize_runs([GenerationMetrics.from_dict(run["metrics"]) for r in rows for run in r["runs"]
                            if run["metrics"]])
    return summary
