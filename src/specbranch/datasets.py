"""Benchmark prompts: the bundled datasets and any JSONL file.

Bundled (copied into `specbranch/data`, sources and licences in `data/SOURCES.md`):
humaneval (code completion, field `prompt`), gsm8k (math word problems, field `question`),
mt_bench (multi-turn chat, field `turns`; the first turn is used), code_edit (input-grounded
edits of a given function: comment, rename, fix a bug, explain; built from HumanEval by
`scripts/make_code_edit.py`, field `prompt`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from specbranch.errors import SpecBranchError

# name -> (file, prompt field, id field or None for the line number, category field or fixed category)
DATASETS = {
    "humaneval": ("humaneval.jsonl", "prompt", "task_id", "=code"),
    "gsm8k": ("gsm8k.jsonl", "question", None, "=math"),
    "mt_bench": ("mt_bench.jsonl", "turns", "question_id", "category"),
    "code_edit": ("code_edit.jsonl", "prompt", "id", "category"),
}


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark prompt: where it comes from and its text."""

    dataset: str
    question_id: str
    category: str
    text: str


def _read_jsonl(
    path: Path, name: str, field: str, id_field: str | None, category: str, limit: int | None
) -> list[BenchPrompt]:
    prompts: list[BenchPrompt] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SpecBranchError(f"cannot read prompts file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecBranchError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or field not in record:
            raise SpecBranchError(f"{path}, line {number}: no field {field!r} (use --prompt-field)")
        text = record[field]
        if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
            text = text[0]
        if not isinstance(text, str) or not text:
            raise SpecBranchError(f"{path}, line {number}: field {field!r} must be a non-empty string")
        qid = str(record.get(id_field, number)) if id_field else str(number)
        cat = category[1:] if category.startswith("=") else str(record.get(category, name))
        prompts.append(BenchPrompt(name, qid, cat, text))
        if limit is not None and len(prompts) >= limit:
            break
    if not prompts:
        raise SpecBranchError(f"{path}: no prompts")
    return prompts


def load_dataset(name: str, limit: int | None = None) -> list[BenchPrompt]:
    """The first `limit` prompts of a bundled dataset."""
    if name not in DATASETS:
        raise SpecBranchError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    file, field, id_field, category = DATASETS[name]
    path = resources.files("specbranch") / "data" / file
    return _read_jsonl(path, name, field, id_field, category, limit)


def load_prompts_file(path: str, field: str = "prompt", limit: int | None = None) -> list[BenchPrompt]:
    """The first `limit` prompts of any JSONL file, one JSON object per line with `field`."""
    return _read_jsonl(Path(path), Path(path).stem, field, None, "=custom", limit)
