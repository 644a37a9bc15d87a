"""What `specbranch bench-serve` writes: a table, results.json and a plot against concurrency."""

from __future__ import annotations

import json
from pathlib import Path

from specbranch.decoders.tree_control import MODES

COLUMNS = (  # (header, row key, format)
    ("clients", "concurrency", "{:d}"),
    ("max-batch", "max_batch", "{:d}"),
    ("aggregate tok/s", "aggregate_tokens_per_second", "{:.2f}"),
    ("full-load tok/s", "full_load_tokens_per_second", "{:.2f}"),
    ("batching ceiling tok/s", "ceiling_tokens_per_second", "{:.2f}"),
    ("per-request tok/s", "request_tokens_per_second", "{:.2f}"),
    ("TTFT p50 s", "ttft_p50", "{:.2f}"),
    ("TTFT p95 s", "ttft_p95", "{:.2f}"),
    ("ITL p50 ms", "itl_p50", "{:.0f}"),
    ("ITL p95 ms", "itl_p95", "{:.0f}"),
    ("mean batch", "mean_batch_size", "{:.2f}"),
    ("requests", "requests", "{:d}"),
)
MILLISECONDS = ("itl_p50", "itl_p95")


def load_table(rows: list[dict]) -> str:
    """A markdown table, one row per configuration ("–" for a figure the row lacks: the batching
    ceiling beside a batching server); the last column: the controller's rounds plain/lookup/draft
    ("–" for methods without one)."""
    headers = [h for h, _, _ in COLUMNS] + ["rounds plain/lookup/draft"]
    lines = ["| method | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
    for row in rows:
        cells = [
            "–" if row.get(key) is None else fmt.format(row[key] * (1000 if key in MILLISECONDS else 1))
            for _, key, fmt in COLUMNS
        ]
        modes = row["rounds_by_mode"]
        cells.append("/".join(str(modes.get(m, 0)) for m in MODES) if modes else "–")
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_load(rows: list[dict], out: Path) -> str:
    """concurrency.png: aggregate (solid) and full-load (dashed) tokens/s against concurrency, one
    colour per method and setting (one legend entry each), and the one-at-a-time rows' batching
    ceiling (dotted); both axes logarithmic, so a ceiling far above the measured rates does not
    flatten them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[dict]] = {}
    for row in rows:
        label = f"{row['method']} (max-batch {'= clients' if row['setting'] == 'auto' else row['setting']})"
        series.setdefault(label, []).append(row)
    for label, points in series.items():
        clients = [p["concurrency"] for p in points]
        aggregate = [p["aggregate_tokens_per_second"] for p in points]
        (line,) = ax.plot(clients, aggregate, marker="o", label=label)
        ax.plot(clients, [p["full_load_tokens_per_second"] for p in points], linestyle="--",
                color=line.get_color())
        ceiling = [(p["concurrency"], p["ceiling_tokens_per_second"]) for p in points
                   if p.get("ceiling_tokens_per_second") is not None]
        if ceiling:
            ax.plot(*zip(*ceiling, strict=True), linestyle=":", color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("tokens/s")
    ax.set_title("solid: aggregate; dashed: full load; dotted: batching ceiling", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "concurrency.png", dpi=120)
    plt.close(fig)
    return "concurrency.png"


def write_load_outputs(rows: list[dict], config: dict, out_dir: str | Path) -> list[str]:
    """results.json, report.md and concurrency.png in out_dir; the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"config": config, "rows": rows}, indent=2))
    (out / "report.md").write_text(f"# bench-serve\n\n{load_table(rows)}\n\n![](concurrency.png)\n")
    return ["results.json", "report.md", plot_load(rows, out)]
