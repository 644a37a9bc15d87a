"""`specbranch bench` on tiny random models: runs in seconds and writes every documented output."""

from __future__ import annotations

import json

import pytest
from helpers import save_tiny_model_dir

from specbranch.bench.methods import parse_method
from specbranch.bench.run import placement_threads
from specbranch.cli import main
from specbranch.errors import SpecBranchError

METHODS = ["ar", "ar:threads=1", "hf-assisted", "hf-lookup", "lookup", "sd:gamma=3", "pearl:inline=true",
           "specbranch:k_max=2,epsilon=0.1"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    kw = {"max_positions": 2048}  # char-level prompts of the bundled datasets are long
    target = save_tiny_model_dir(root / "target", seed=1, **kw)
    return target, save_tiny_model_dir(root / "draft", seed=2, **kw)


def run_bench(folders, out, *extra: str) -> int:
    target, draft = folders
    return main(["bench", "--target", target, "--draft", draft, "--draft-quantize", "none",
                 "--max-new-tokens", "8", "--num-prompts", "2", "--no-progress", "--out", str(out), *extra])


def test_bench_writes_every_output_with_the_documented_schema(folders, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "hello there"}\n{"text": "the cat sat"}\n{"text": "unused"}\n')
    out = tmp_path / "out"
    assert run_bench(folders, out, "--prompts-file", str(prompts), "--prompt-field", "text",
                     "--methods", *METHODS) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"config", "machine", "summary", "per_dataset", "records"}
    assert {"cpu", "cores", "torch_threads", "torch", "transformers", "git_commit"} <= set(results["machine"])
    assert list(results["summary"]) == METHODS
    assert len(results["records"]) == 2 * len(METHODS)
    for name, s in results["summary"].items():
        assert s["tokens_per_second_mean"] > 0
        assert s["greedy_equal_to_ar"] == "2/2", name  # temperature 0: every method equals AR
        assert s["speedup_geomean"] > 0 and s["speedup_min"] <= s["speedup_geomean"] <= s["speedup_max"]
        for key in ("mean_accepted_length", "acceptance_rate", "rollback_rate", "draft_waste",
                    "branch_hit_rate", "target_busy_seconds", "draft_busy_seconds", "peak_rss_mb"):
            assert key in s
    assert results["summary"]["hf-assisted"]["mean_accepted_length"] is None
    assert results["summary"]["hf-lookup"]["mean_accepted_length"] is None
    assert results["summary"]["specbranch:k_max=2,epsilon=0.1"]["mean_accepted_length"] >= 1
    assert all(1 <= r["runs"][0]["new_tokens"] <= 8 for r in results["records"])
    answers = sorted(p.name for p in (out / "answers").iterdir())
    assert len(answers) == len(METHODS)
    line = json.loads((out / "answers" / "specbranch_k_max=2_epsilon=0.1.jsonl").read_text().splitlines()[0])
    assert set(line) >= {"question_id", "category", "choices"}
    assert set(line["choices"][0]) >= {"turns", "new_tokens", "wall_time", "accept_lengths"}
    report = (out / "report.md").read_text()
    assert "| method |" in report and "specbranch:k_max=2,epsilon=0.1" in report
    for plot in ("speedup.png", "accept_lengths.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    assert "| method |" in capsys.readouterr().out


def test_bench_on_bundled_datasets_at_temperature_one(folders, tmp_path):
    out = tmp_path / "out"
    assert run_bench(folders, out, "--dataset", "humaneval", "mt_bench", "--temperature", "1",
                     "--methods", "ar", "specbranch:inline=true", "--ignore-eos") == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["per_dataset"]) == {"humaneval", "mt_bench"}
    assert results["summary"]["specbranch:inline=true"]["greedy_equal_to_ar"] is None
    assert all(run["new_tokens"] == 8 for r in results["records"] for run in r["runs"])


def test_split_placement_gives_each_model_half_the_cores(folders, tmp_path):
    out = tmp_path / "out"
    assert run_bench(folders, out, "--placement", "split", "--methods", "ar", "sd",
                     "specbranch:execution=serial") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["placement"] == "split"
    assert results["summary"]["specbranch:execution=serial"]["execution"] == "serial"
    assert placement_threads("split", 4) == 2 and placement_threads("shared", 4) == 4
    assert placement_threads("split", 1) == 1
    with pytest.raises(SpecBranchError, match="placement"):
        placement_threads("halves", 4)


def test_malformed_prompts_file_is_a_clear_error(folders, tmp_path, capsys):
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": oops}\n')
    assert run_bench(folders, tmp_path / "out", "--prompts-file", str(prompts)) == 2
    assert "line 2: not valid JSON" in capsys.readouterr().err
    prompts.write_text('{"question": "no prompt field"}\n')
    assert run_bench(folders, tmp_path / "out", "--prompts-file", str(prompts)) == 2
    assert "no field 'prompt'" in capsys.readouterr().err
    assert run_bench(folders, tmp_path / "out", "--prompts-file", str(tmp_path / "missing.jsonl")) == 2
    assert "cannot read prompts file" in capsys.readouterr().err


def test_method_specs_parse_and_reject_unknown_options():
    spec = parse_method("specbranch:k_max=1,epsilon=0.3,draft_sampling=greedy")
    assert spec.method == "specbranch" and spec.options == {"k_max": 1, "epsilon": 0.3}
    assert spec.spec.draft_sampling == "greedy"
    assert parse_method("ar:threads=1").threads == 1
    with pytest.raises(SpecBranchError, match="unknown method"):
        parse_method("medusa")
    with pytest.raises(SpecBranchError, match="takes no option"):
        parse_method("sd:k_max=2")


def test_every_bundled_dataset_is_a_bench_choice(folders, tmp_path):
    out = tmp_path / "out"
    assert run_bench(folders, out, "--dataset", "code_edit", "--methods", "ar", "lookup") == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["per_dataset"]) == {"code_edit"}
