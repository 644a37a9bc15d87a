"""`specbranch bench-serve` on tiny random models: a real server under concurrent `openai`
clients, every configuration's figures and the documented outputs."""

from __future__ import annotations

import json

import pytest
from helpers import char_tokenizer, save_tiny_model_dir
from test_server import CHAT_TEMPLATE
from test_tree_decoder import WIDE

from specbranch.bench import load
from specbranch.bench.load import RequestRecord, ceiling_rate, full_load_rate
from specbranch.cli import main
from specbranch.cli.bench_serve import interleave
from specbranch.datasets import BenchPrompt
from specbranch.runtime import assembly


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-serve")
    paths = [save_tiny_model_dir(root / name, seed=seed) for name, seed in (("target", 1), ("draft", 2))]
    tokenizer = char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    for path in paths:
        tokenizer.save_pretrained(path)
    return paths


def test_bench_serve_reports_every_configuration(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(assembly, "placement_costs", lambda pair, *threads: WIDE)
    ran, run = [], load._run_configuration
    monkeypatch.setattr(load, "_run_configuration", lambda *a: ran.append(a[2:]) or run(*a))
    target, draft = folders
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in ("hello", "the cat", "a b c")))
    out = tmp_path / "out"
    argv = ["bench-serve", "--target", target, "--draft", draft, "--draft-quantize", "none",
            "--methods", "ar", "specbranch:execution=serial", "--concurrency", "1", "3",
            "--max-batch", "auto", "1",
            "--requests-per-client", "1", "--max-tokens", "6", "--prompts-file", str(prompts),
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    methods = ("ar", "specbranch:execution=serial")
    # Run with the configurations of one concurrency back to back; listed by method.
    assert [(m.name, s, c) for m, s, _, c in ran] == [
        (m, s, c) for c in (1, 3) for s in ("auto", "1") for m in methods
    ]
    assert [(r["method"], r["setting"], r["concurrency"]) for r in rows] == [
        (m, s, c) for m in methods for s in ("auto", "1") for c in (1, 3)
    ]
    for row in rows:
        assert row["requests"] == row["concurrency"] and row["completion_tokens"] > 0
        assert row["aggregate_tokens_per_second"] > 0 and 0 < row["ttft_p50"] <= row["ttft_p95"]
        assert row["full_load_tokens_per_second"] > 0
        ceiling = row["ceiling_tokens_per_second"]  # one-at-a-time rows only, never below them
        assert (ceiling is None) == (row["max_batch"] > 1)
        assert ceiling is None or ceiling >= 0.99 * row["aggregate_tokens_per_second"]
        kept = row["request_records"]  # each request's times, for bounds of one's own
        assert len(kept) == row["requests"] and sum(r["tokens"] for r in kept) == row["completion_tokens"]
        assert min(r["sent"] for r in kept) == 0
        assert all(r["sent"] < r["first_chunk"] <= r["end"] for r in kept)
        assert row["max_batch"] == (row["concurrency"] if row["setting"] == "auto" else 1)
        assert 1.0 <= row["mean_batch_size"] <= row["max_batch"]
        controlled = row["method"].startswith("specbranch")  # its controller's choices reported
        assert (sum(row["rounds_by_mode"].values()) > 0) == controlled
    assert (out / "concurrency.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| method | clients |" in report and "rounds plain/lookup/draft |" in report
    assert "aggregate tok/s" in capsys.readouterr().out


def test_full_load_rate_counts_only_while_every_client_has_a_request_in_flight():
    # Client 0's one request ends at t = 4; client 1's second request runs on alone until t = 9.
    records = [
        RequestRecord("a", 0, sent=0.0, chunks=[1.0, 2.0, 3.0, 4.0], end=4.0, tokens=8),
        RequestRecord("b", 1, sent=0.0, chunks=[1.0, 2.0], end=2.0, tokens=4),
        RequestRecord("c", 1, sent=2.0, chunks=[3.0, 5.0, 7.0, 9.0], end=9.0, tokens=4),
    ]
    # Until t = 4: all 8 of a, all 4 of b, and 1 of c's 4 chunks (1 token each): 13 tokens in 4 s.
    assert full_load_rate(records) == pytest.approx(13 / 4)
    # The aggregate over the whole run would be 16 tokens in 9 s: the lone tail weighs on it.


def test_the_batching_ceiling_is_the_busiest_clients_alone_seconds():
    # A one-at-a-time server: a (client 0) served 0-4 s, b (client 1) queued until 4, served to 6;
    # client 1's next request c, sent at 6.5, served 6.5-9. Alone seconds: client 0: 4, client 1:
    # 2 + 2.5 = 4.5; no server ends before client 1 has had 4.5 s: 16 tokens / 4.5 s.
    records = [
        RequestRecord("a", 0, sent=0.0, chunks=[1.0, 4.0], end=4.0, tokens=8),
        RequestRecord("b", 1, sent=0.0, chunks=[5.0, 6.0], end=6.0, tokens=4),
        RequestRecord("c", 1, sent=6.5, chunks=[7.0, 9.0], end=9.0, tokens=4),
    ]
    assert ceiling_rate(records) == pytest.approx(16 / 4.5)
    # The one-at-a-time aggregate is 16 tokens in 9 s: batching could gain 2x at most here.


def test_bench_serve_refuses_peers_and_bad_settings(folders, capsys):
    target, draft = folders
    common = ["bench-serve", "--target", target, "--draft", draft]
    assert main([*common, "--methods", "llamacpp"]) == 2
    assert main([*common, "--max-batch", "0"]) == 2
    assert "--max-batch" in capsys.readouterr().err


def test_prompts_interleave_their_datasets():
    prompts = [BenchPrompt(d, str(i), d, "x") for d in ("a", "b") for i in range(3)]
    prompts.append(BenchPrompt("c", "0", "c", "x"))
    assert [p.dataset for p in interleave(prompts)] == ["a", "b", "c", "a", "b", "a", "b"]
