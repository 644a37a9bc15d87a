"""Build the bundled input-grounded prompt set `code_edit` from the bundled HumanEval problems.

Each prompt hands the model a whole function (a HumanEval prompt with its canonical solution,
MIT licence) and asks for an edit whose answer mostly copies that input: comment every line,
rename the function, fix a bug injected here, or explain the code quoting its lines. Four
tasks over the first PROBLEMS problems, in turn. Deterministic: running it again writes the
same file.

    python scripts/make_code_edit.py   # writes src/specbranch/data/code_edit.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "src" / "specbranch" / "data"
PROBLEMS = 48
# Injected bugs: the first of these found in the solution is swapped (comparison or off-by-one).
BUGS = (("<=", "<"), (">=", ">"), (" + 1", " - 1"), (" - 1", " + 1"), ("==", "!="), (" < ", " <= "),
        (" > ", " >= "), ("True", "False"))

TASKS = {
    "comment": "Add a short comment above every line of the body of the function below, explaining "
    "what the line does. Return the whole code.\n\n```python\n{code}```",
    "rename": "Rename the function `{entry}` to `{renamed}` everywhere in the code below, including its "
    "docstring examples. Return the whole code.\n\n```python\n{code}```",
    "bugfix": "The function below has one bug. Find it, explain it in one sentence, then return the whole "
    "corrected code.\n\n```python\n{code}```",
    "explain": "Explain step by step what the following function does, quoting each line you refer to, "
    "and state its time complexity.\n\n```python\n{code}```",
}


def inject_bug(solution: str) -> str | None:
    """The solution with its first matching pattern swapped, or None when none matches."""
    for old, new in BUGS:
        if old in solution:
            return solution.replace(old, new, 1)
    return None


def build() -> list[dict]:
    problems = [json.loads(line) for line in (DATA / "humaneval.jsonl").read_text().splitlines() if line]
    rows, names = [], list(TASKS)
    for number, problem in enumerate(problems[:PROBLEMS]):
        task = names[number % len(names)]
        solution = problem["canonical_solution"]
        if task == "bugfix":
            solution = inject_bug(solution) or solution
            task = task if solution != problem["canonical_solution"] else "explain"
        code = problem["prompt"] + solution
        entry = problem["entry_point"]
        prompt = TASKS[task].format(code=code, entry=entry, renamed=f"{entry}_v2")
        row = {"id": f"code_edit/{number}", "category": task, "source": problem["task_id"], "prompt": prompt}
        rows.append(row)
    return rows


if __name__ == "__main__":
    rows = build()
    (DATA / "code_edit.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} prompts to {DATA / 'code_edit.jsonl'}")
