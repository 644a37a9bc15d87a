"""Benchmark outputs a person can read: results.json, Spec-Bench answers, report.md, plots.

Files written to the output folder:
- `results.json`: config, machine, per-method summary (overall and per dataset), per-prompt records;
- `answers/<method>.jsonl`: one line per prompt in Spec-Bench's format (`question_id`,
  `category`, `model_id`, `choices: [{index, turns, new_tokens, wall_time, accept_lengths}]`,
  one choice per repeat);
- `report.md`: one table per dataset and overall;
- `speedup.png` (speedup vs the baseline, AR unless `--baseline` names another, per method and
  dataset) and `accept_lengths.png` (distribution of tokens committed per target forward, per
  method).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

COLUMNS = [
    ("tok/s", lambda s: f"{s['tokens_per_second_mean']:.2f} ± {s['tokens_per_second_std']:.2f}"),
    ("speedup vs baseline (geo [min–max])", lambda s: (
        f"{s['speedup_geomean']:.2f}x [{s['speedup_min']:.2f}–{s['speedup_max']:.2f}]"
        if s["speedup_geomean"] else "–")),
    ("mean acc. len", lambda s: _num(s["mean_accepted_length"])),
    ("acceptance", lambda s: _num(s["acceptance_rate"])),
    ("rollback", lambda s: _num(s["rollback_rate"])),
    ("draft waste", lambda s: _num(s["draft_waste"])),
    ("branch hit", lambda s: _num(s["branch_hit_rate"])),
    ("overlap", lambda s: _num(s["overlap_efficiency"])),
    ("H-RAD overhead", lambda s: f"{100 * s['hrad_overhead']:.2f}%" if s.get("hrad_overhead") else "–"),
    ("rounds plain/lookup/draft", lambda s: "/".join(
        str((s.get("rounds_by_mode") or {}).get(m, 0)) for m in ("plain", "lookup", "draft")
    ) if s.get("rounds_by_mode") else "–"),
    ("busy target/draft s", lambda s: (
        f"{s['target_busy_seconds']:.1f}/{s['draft_busy_seconds']:.1f}" if s["target_busy_seconds"] else "–"
    )),
    ("peak RSS MiB", lambda s: f"{s['peak_rss_mb']:.0f}" if s["peak_rss_mb"] else "–"),
    ("greedy = AR", lambda s: s["greedy_equal_to_ar"] or "–"),
]


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


def table(summary: dict) -> str:
    """A markdown table: one row per method."""
    lines = ["| method | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(f(s) for _, f in COLUMNS) + " |")
    return "\n".join(lines)


def markdown_report(results: dict) -> str:
    config, machine = results["config"], results["machine"]
    sampling = config["sampling"]
    head = [
        "# specbranch bench",
        "",
        f"Model pair: {config['model_pair']}; datasets: {', '.join(config['datasets'])}; "
        f"{config['num_prompts']} prompts; {config['max_new_tokens']} new tokens; temperature "
        f"{sampling['temperature']}, top-k {sampling['top_k']}, top-p {sampling['top_p']}; repeats "
        f"{config['repeats']}; chat template: {config['chat']}.",
        f"Machine: {machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}, transformers "
        f"{machine['transformers']}, commit {machine['git_commit']}.",
        f"Speedup is per prompt against `{config['baseline']}` in the same run; tok/s is the mean ± std "
        "over prompts; peak RSS is the caller's peak so far plus the method's draft worker.",
        "",
        "## All prompts",
        "",
        table(results["summary"]),
    ]
    for dataset, summary in results["per_dataset"].items():
        head += ["", f"## {dataset}", "", table(summary)]
    divergences = [r for r in results["records"] if r["divergence"]]
    if divergences:
        head += ["", "## Greedy divergences from AR", ""]
        head += ["| method | prompt | position | target top-2 logit gap |", "|---|---|---|---|"]
        for r in divergences:
            d = r["divergence"]
            head.append(
                f"| {r['method']} | {r['dataset']}/{r['question_id']} | {d['position']} | "
                f"{d['target_top2_gap']:.4f} |"
            )
    return "\n".join(head) + "\n"


def spec_bench_answers(results: dict) -> dict[str, list[dict]]:
    """Per method, the Spec-Bench answer lines."""
    answers: dict[str, list[dict]] = {}
    for r in results["records"]:
        choices = [
            {
                "index": i,
                "turns": [r["text"]],
                "new_tokens": [run["new_tokens"]],
                "wall_time": [run["wall_seconds"]],
                "accept_lengths": run["metrics"]["accept_lengths"] if run["metrics"] else [],
            }
            for i, run in enumerate(r["runs"])
        ]
        answers.setdefault(r["method"], []).append(
            {"question_id": r["question_id"], "category": r["category"], "model_id": r["method"],
             "choices": choices}
        )
    return answers


def plots(results: dict, out: Path) -> list[str]:
    """speedup.png and accept_lengths.png; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    methods = list(results["summary"])
    datasets = list(results["per_dataset"])
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(methods) * max(1, len(datasets))), 4))
    width = 0.8 / max(1, len(datasets))
    for j, dataset in enumerate(datasets):
        values = [(results["per_dataset"][dataset].get(m) or {}).get("speedup_geomean") or 0 for m in methods]
        bars = ax.bar([i + j * width for i in range(len(methods))], values, width, label=dataset)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks([i + width * (len(datasets) - 1) / 2 for i in range(len(methods))], methods, rotation=20)
    ax.set_ylabel("speedup vs the baseline (geometric mean)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "speedup.png", dpi=120)
    plt.close(fig)
    written.append("speedup.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    top = max((max(s["accept_lengths"], default=1) for s in results["summary"].values()), default=1)
    for method, s in results["summary"].items():
        if s["accept_lengths"] and s["draft_busy_seconds"] is not None:
            ax.hist(s["accept_lengths"], bins=range(1, top + 2), histtype="step", density=True, label=method)
    ax.set_xlabel("tokens committed per target forward")
    ax.set_ylabel("fraction of rounds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accept_lengths.png", dpi=120)
    plt.close(fig)
    written.append("accept_lengths.png")
    return written


def write_outputs(results: dict, out_dir: str | Path) -> list[str]:
    """Write every output file; returns their paths relative to out_dir."""
    out = Path(out_dir)
    (out / "answers").mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    written = ["results.json"]
    for method, lines in spec_bench_answers(results).items():
        name = f"answers/{_slug(method)}.jsonl"
        (out / name).write_text("".join(json.dumps(line) + "\n" for line in lines))
        written.append(name)
    (out / "report.md").write_text(markdown_report(results))
    written.append("report.md")
    written += plots(results, out)
    return written
