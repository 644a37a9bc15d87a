"""Mutation check: does the test suite catch the exactness bugs that others have shipped?

Each mutant is a realistic bug written into a copy of `src/` (the catalogue below: reused
uniforms, q rows from the wrong pipeline, truncation that peeks at the sampled token or at the
target, one side ignoring a sampling parameter, argmax instead of sampling, a residual not
updated, q rows rounded in transit, an off-by-one in the rows H-RAD keeps, branch choice by
target probability). For each, the exactness tests run against the mutated copy
(`PYTHONPATH` puts it first; the draft worker process inherits it); a mutant is *killed* when
they fail. The unmutated copy must pass first. Slow (about a minute per mutant), so it is not
part of the default test run:

    python scripts/mutation_check.py            # every mutant
    python scripts/mutation_check.py --list     # the catalogue
    python scripts/mutation_check.py reuse-uniform-block target-ignores-top-p

Prints one row per mutant (killed or SURVIVED, the first failing test, seconds) and exits 1 if
any mutant survived.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [  # fast rule-level tests first: most mutants die there within seconds
    "tests/test_verify_rules.py",
    "tests/test_sampling.py",
    "tests/test_decide_round.py",
    "tests/test_tree_verify.py",
    "tests/test_transport_codec.py",
    "tests/test_drafter.py",
    "tests/test_exact_distribution.py",
    "tests/test_tree_decoder.py",
    "tests/test_lookup.py",
    "tests/test_tree_lookup.py",
    "tests/test_parallel_runtime.py",
]


@dataclass(frozen=True)
class Mutant:
    """A bug: in `path` (under src/specbranch), each `old` text (which must occur exactly once)
    becomes its `new` text."""

    name: str
    what: str
    path: str
    edits: tuple[tuple[str, str], ...]


MUTANTS = [
    Mutant(
        "reuse-uniform-block",
        "one uniform decides every token of a block (PEARL's published defect)",
        "verify.py",
        ((
            "    for i, token in enumerate(tokens):\n        if uniform(generator) >= sampled",
            "    u = uniform(generator)\n    for i, token in enumerate(tokens):\n        if u >= sampled",
        ),),
    ),
    Mutant(
        "reuse-uniform-roots",
        "one uniform decides every candidate of rule 4 (roots and sampled tree children)",
        "verify.py",
        ((
            "    for i, (q, token) in enumerate(zip(rows, tokens, strict=True)):\n"
            "        if uniform(generator) <",
            "    u = uniform(generator)\n"
            "    for i, (q, token) in enumerate(zip(rows, tokens, strict=True)):\n"
            "        if u <",
        ),),
    ),
    Mutant(
        "reuse-uniform-branch-point",
        "the first pending token's uniform is reused for the first root at the branch point",
        "verify.py",
        (
            (
                "    for i, token in enumerate(tokens):\n        if uniform(generator) >= sampled",
                "    for i, token in enumerate(tokens):\n        u = uniform(generator)\n"
                "        if i == 0:\n            _FIRST[0] = u\n        if u >= sampled",
            ),
            (
                "    for i, (q, token) in enumerate(zip(rows, tokens, strict=True)):\n"
                "        if uniform(generator) <",
                "    for i, (q, token) in enumerate(zip(rows, tokens, strict=True)):\n"
                "        if (_FIRST.pop() if i == 0 and _FIRST else uniform(generator)) <",
            ),
            ("from specbranch.sampling import sample, uniform, without\n",
             "from specbranch.sampling import sample, uniform, without\n\n_FIRST: list = []\n"),
        ),
    ),
    Mutant(
        "raw-q-rows",
        "the pending tokens' q rows are the draft's raw softmax, not the processed rows sampled from",
        "decoders/drafter.py",
        (("                branch.rows.append(q[i])", "                branch.rows.append(raw[i])"),),
    ),
    Mutant(
        "cut-peeks-at-sampled-token",
        "a branch stops where the token it just sampled is unlikely under the draft",
        "decoders/drafter.py",
        ((
            "                branch.tokens.append(token)\n",
            "                if float(raw[i][token]) < self.request.epsilon and branch.cut:\n"
            "                    branch.open = False\n                    continue\n"
            "                branch.tokens.append(token)\n",
        ),),
    ),
    Mutant(
        "sd-stop-peeks-at-sampled-token",
        "SD stops drafting where the token it just sampled has draft probability < 0.5",
        "decoders/sd.py",
        ((
            "            tokens.append(x)\n",
            "            if i > 0 and float(q[x]) < 0.5:\n                break\n"
            "            tokens.append(x)\n",
        ),),
    ),
    Mutant(
        "sd-truncation-peeks-at-target",
        "SD drops drafted tokens from the first one the target finds less likely than the draft",
        "decoders/sd.py",
        ((
            "        sampled = self.sampled_drafts and bool(q_rows)\n",
            "        drafts = tokens[fixed:]\n"
            "        cut = next((i for i, x in enumerate(drafts) if p[fixed + i][x] < q_rows[i][x]), "
            "len(drafts))\n"
            "        tokens, q_rows, p = tokens[: fixed + cut], q_rows[:cut], p[: fixed + cut + 1]\n"
            "        sampled = self.sampled_drafts and bool(q_rows)\n",
        ),),
    ),
    Mutant(
        "target-ignores-temperature",
        "the parallel methods' target side ignores temperature and top-p",
        "decoders/parallel.py",
        ((
            "            p = process_logits(logits, request.sampling)",
            "            p = process_logits(\n"
            "                logits, type(request.sampling)(float(request.sampling.temperature > 0))\n"
            "            )",
        ),),
    ),
    Mutant(
        "sd-target-ignores-top-p",
        "SD's target side ignores top-p and top-k",
        "decoders/sd.py",
        ((
            "        p = process_logits(logits, request.sampling)  # [n+1, V]",
            "        p = process_logits(logits, type(request.sampling)(request.sampling.temperature))",
        ),),
    ),
    Mutant(
        "argmax-correction",
        "rule 1's correction is the residual's argmax instead of a sample",
        "verify.py",
        (("            return i, sample(residual(p[i], q[i]), generator)",
          "            return i, int(residual(p[i], q[i]).argmax())"),),
    ),
    Mutant(
        "argmax-miss",
        "rule 3's token after a miss is the most likely non-root instead of the sample",
        "verify.py",
        ((
            "    y = sample(p_b, generator)\n    return (roots.index(y) if y in roots else None), y",
            "    y = sample(p_b, generator)\n    if y in roots:\n        return roots.index(y), y\n"
            "    rest = p_b.clone()\n    rest[roots] = 0\n    return None, int(rest.argmax())",
        ),),
    ),
    Mutant(
        "residual-not-updated",
        "rule 4 tests every candidate against the target's row (the residual is never updated)",
        "verify.py",
        (("        r = residual(r, q)\n", "        pass\n"),),
    ),
    Mutant(
        "rows-rounded-in-transit",
        "q rows cross the process boundary in half precision",
        "transport/process.py",
        (("            self._send(rows.float())", "            self._send(rows.half().float())"),),
    ),
    Mutant(
        "hrad-rows-off-by-one",
        "after H-RAD's cut, the pending block's q rows start one position late",
        "decoders/drafter.py",
        ((
            "                rows = torch.stack(branch.rows[:kept])",
            "                rows = torch.stack(branch.rows[1:] + branch.rows[:1])[:kept]",
        ),),
    ),
    Mutant(
        "tree-children-against-parent-q",
        "tree children drawn without replacement are each tested against the parent's full q",
        "verify.py",
        ((
            "    rows, tokens = [tree.q[c] for c in children], [tree.tokens[c] for c in children]",
            "    rows, tokens = [tree.q[children[0]] for c in children], [tree.tokens[c] for c in children]",
        ),),
    ),
    Mutant(
        "tree-keeps-children-by-their-token",
        "the tree keeps sampled children by their own draft probability instead of their rank's",
        "decoders/tree_draft.py",
        (("    for c in sorted(candidates, key=lambda c: -c.rank):",
          "    for c in sorted(candidates, key=lambda c: -c.value):"),),
    ),
    Mutant(
        "sd-lookup-tested-against-p",
        "SD tests lookup tokens beside sampled drafts against the target's own row (always accepted)",
        "decoders/sd.py",
        (("            rows = [one_hot(x, p) for x in tokens[:fixed]] + q_rows",
          "            rows = [p[i] for i in range(fixed)] + q_rows"),),
    ),
    Mutant(
        "tree-mixed-rule-keeps-fixed-tokens",
        "beside deterministic children, rule 4 runs on p with the deterministic tokens left in",
        "verify.py",
        (("            nxt, y = _sampled_children(without(row, [tree.tokens[c] for c in fixed]), "
          "tree, drawn, generator)",
          "            nxt, y = _sampled_children(row, tree, drawn, generator)"),),
    ),
    Mutant(
        "tree-drops-children-equal-to-lookup",
        "sampled children beside a lookup token are drawn from q and dropped when they equal it "
        "(the first kept one is then distributed as q without it, but tested against q)",
        "decoders/tree_draft.py",
        (("        tokens, rows = sample_without_replacement(without(q, taken), k, rnd.request.draft_gen)",
          "        tokens, rows = sample_without_replacement(q, k, rnd.request.draft_gen)\n"
          "        kept = [i for i, t in enumerate(tokens) if t not in taken]\n"
          "        tokens, rows = [tokens[i] for i in kept], [rows[i] for i in kept]"),),
    ),
    Mutant(
        "tree-target-ignores-temperature",
        "serial trees' target side drops the temperature (top-k and top-p kept)",
        "decoders/tree.py",
        (("        p = process_logits(logits, request.sampling)  # [1 + N, V]",
          "        p = process_logits(logits, type(request.sampling)("
          "float(request.sampling.temperature > 0), request.sampling.top_k, request.sampling.top_p))"),),
    ),
    Mutant(
        "tree-q-rows-at-temperature-1",
        "sampled tree children are drawn from the processed q but tested against the draft's raw softmax",
        "decoders/tree_draft.py",
        (("        tokens, rows = sample_without_replacement(without(q, taken), k, rnd.request.draft_gen)",
          "        tokens, _ = sample_without_replacement(without(q, taken), k, rnd.request.draft_gen)\n"
          "        rows = [without(raw, taken + tokens[:i]) for i in range(len(tokens))]"),),
    ),
    Mutant(
        "tree-mixed-recovers-with-first-draw",
        "at a mixed node whose children all fail, the draw that missed the deterministic children is "
        "committed instead of a sample of rule 4's last residual",
        "verify.py",
        ((
            "            nxt, y = _sampled_children(without(row, [tree.tokens[c] for c in fixed]), "
            "tree, drawn, generator)",
            "            nxt, y2 = _sampled_children(without(row, [tree.tokens[c] for c in fixed]), "
            "tree, drawn, generator)\n"
            "            y = y2 if nxt is not None or y is None else y",
        ),),
    ),
    Mutant(
        "sd-lookup-correction-keeps-token",
        "SD accepts a lookup token beside sampled drafts with probability p(x) but draws the correction "
        "from p with x still in it",
        "decoders/sd.py",
        ((
            "            accepted, nxt = verify_sampled_block(p, torch.stack(rows), tokens, "
            "request.verify_gen)",
            "            accepted = next((i for i in range(fixed) if uniform(request.verify_gen) >= "
            "float(p[i][tokens[i]])), fixed)\n"
            "            if accepted < fixed:\n"
            "                nxt = sample(p[accepted], request.verify_gen)\n"
            "            else:\n"
            "                more, nxt = verify_sampled_block(\n"
            "                    p[fixed:], torch.stack(q_rows), tokens[fixed:], request.verify_gen)\n"
            "                accepted += more",
        ), ("from specbranch.sampling import process_logits, sample\n",
            "from specbranch.sampling import process_logits, sample, uniform\n")),
    ),
    Mutant(
        "sd-lookup-rows-after-drafts",
        "SD's block of lookup tokens then sampled drafts lists the lookup tokens' point masses after "
        "the draft rows",
        "decoders/sd.py",
        (("            rows = [one_hot(x, p) for x in tokens[:fixed]] + q_rows",
          "            rows = q_rows + [one_hot(x, p) for x in tokens[:fixed]]"),),
    ),
    Mutant(
        "near-point-mass-not-drawn",
        "a distribution with one token above 0.99 is treated as a point mass (no draw)",
        "sampling.py",
        (("    if int(torch.count_nonzero(probs)) == 1:", "    if float(probs.max()) > 0.99:"),),
    ),
    Mutant(
        "branch-by-target-probability",
        "rule 3 continues the root the target likes best whenever the target's sample is a root",
        "verify.py",
        ((
            "    y = sample(p_b, generator)\n    return (roots.index(y) if y in roots else None), y",
            "    y = sample(p_b, generator)\n    best = max(roots, key=lambda t: float(p_b[t]))\n"
            "    return (roots.index(best), best) if y in roots else (None, y)",
        ),),
    ),
]


def mutate(src: Path, mutant: Mutant) -> None:
    """Apply the mutant's edits to the copy of the package at src/specbranch."""
    path = src / "specbranch" / mutant.path
    text = path.read_text()
    for old, new in mutant.edits:
        if text.count(old) != 1:
            count = text.count(old)
            raise SystemExit(f"{mutant.name}: the text to mutate occurs {count} times in {mutant.path}")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(src: Path) -> tuple[bool, str, float, str]:
    """(passed, first failing test, seconds, pytest's output) of the exactness tests against the
    package in src."""
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    lines = out.stdout.splitlines()
    failed = next((line.split()[1] for line in lines if line.startswith(("FAILED", "ERROR"))), "")
    return out.returncode == 0, failed, time.monotonic() - start, out.stdout + out.stderr


def check(mutants: list[Mutant]) -> int:
    """Run the baseline, then each mutant; print the table; the number of survivors."""
    with tempfile.TemporaryDirectory(prefix="specbranch-mutants-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        passed, failed, seconds, output = run_tests(src)
        if not passed:
            tail = "\n".join(output.splitlines()[-30:])
            raise SystemExit(f"{tail}\nthe unmutated source fails {failed or '(see above)'}: fix that first")
        print(f"baseline: the exactness tests pass ({seconds:.0f} s)\n")
        print("| mutant | bug | result | first failing test | s |\n|---|---|---|---|---|", flush=True)
        survivors = 0
        for mutant in mutants:
            original = (src / "specbranch" / mutant.path).read_text()
            mutate(src, mutant)
            passed, failed, seconds, _ = run_tests(src)
            (src / "specbranch" / mutant.path).write_text(original)
            survivors += passed
            result = "SURVIVED" if passed else "killed"
            row = f"| {mutant.name} | {mutant.what} | {result} | {failed or '-'} | {seconds:.0f} |"
            print(row, flush=True)
    print(f"\nmutation score: {len(mutants) - survivors}/{len(mutants)} killed")
    return survivors


def main() -> int:
    parser = argparse.ArgumentParser(description="Apply realistic exactness bugs; do the tests catch each?")
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    args = parser.parse_args()
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:32s} {mutant.what}")
        return 0
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutants: {', '.join(sorted(unknown))} (see --list)")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    return 1 if check(chosen) else 0


if __name__ == "__main__":
    sys.exit(main())
