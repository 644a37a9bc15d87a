"""The two-process runtime: same tokens as inline, and faults surface as clear errors, fast.

Each test spawns real draft worker processes (gloo over localhost).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from helpers import make_pair, perturbed, tiny_model

from specbranch.backends.base import KVSequence
from specbranch.backends.pytorch import TorchBackend
from specbranch.config import GenerationConfig, SamplingParams, SpeculativeConfig
from specbranch.decoders.drafter import BranchDrafter
from specbranch.engine import Engine
from specbranch.errors import WorkerError
from specbranch.transport.inline import InlineLink
from specbranch.transport.messages import Decision, DraftRequest
from specbranch.transport.process import WorkerLink, WorkerOptions

TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.01, seed=2))
PROMPT = [3, 17, 42, 8, 8, 1]
OPTIONS = {
    "pearl": {"max_draft_len": 3},
    "specbranch": {"execution": "parallel", "k_max": 4, "epsilon": 0.1, "max_draft_len": 4},
}


def child_pids() -> set[int]:
    """Live (non-zombie) processes whose parent is this test process."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry))
    return found


@pytest.mark.parametrize("method", ["pearl", "specbranch"])
@pytest.mark.parametrize("draft_sampling", ["sample", "greedy"])
def test_inline_and_two_process_give_identical_tokens(method, draft_sampling):
    spec = SpeculativeConfig(draft_sampling=draft_sampling)
    sampling = SamplingParams(temperature=1.0)
    outputs = {}
    for inline in (True, False):
        with Engine(PAIR, method, spec, inline=inline, **OPTIONS[method]) as engine:
            configs = [GenerationConfig(max_new_tokens=30, sampling=sampling, seed=s) for s in range(5)]
            outputs[inline] = [engine.generate(PROMPT, c).token_ids for c in configs]
    assert outputs[True] == outputs[False]
    assert len({tuple(t) for t in outputs[True]}) > 1  # the seeds really sample


@pytest.mark.parametrize("method", ["pearl", "specbranch"])
def test_killed_draft_worker_is_a_clear_error_within_seconds(method):
    before = child_pids()
    engine = Engine(PAIR, method, **OPTIONS[method])
    stream = engine.stream(PROMPT, GenerationConfig(max_new_tokens=200))
    next(stream)
    engine.decoder.link.process.kill()
    start = time.monotonic()
    with pytest.raises(WorkerError, match="draft worker"):
        for _ in stream:
            pass
    assert time.monotonic() - start < 5
    engine.close()
    assert child_pids() <= before


def test_hung_draft_worker_times_out():
    before = child_pids()
    engine = Engine(PAIR, "specbranch", worker_timeout=2, **OPTIONS["specbranch"])
    stream = engine.stream(PROMPT, GenerationConfig(max_new_tokens=200))
    next(stream)
    os.kill(engine.decoder.link.process.pid, signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(WorkerError, match="hung"):
        for _ in stream:
            pass
    assert time.monotonic() - start < 10
    engine.close()
    assert child_pids() <= before


def test_engines_coexist_and_close_cleanly():
    before = child_pids()
    first = Engine(PAIR, "pearl", **OPTIONS["pearl"])
    second = Engine(PAIR, "specbranch", **OPTIONS["specbranch"])
    assert len(child_pids() - before) == 2
    config = GenerationConfig(max_new_tokens=20)
    assert first.generate(PROMPT, config).token_ids == second.generate(PROMPT, config).token_ids
    first.close()
    second.close()
    second.close()  # closing twice is harmless
    assert child_pids() <= before


def test_engine_reports_the_measured_cost_ratio():
    with Engine(PAIR, "specbranch", execution="parallel", inline=True) as engine:
        metrics = engine.generate(PROMPT, GenerationConfig(max_new_tokens=10)).metrics
    assert metrics.cost_ratio > 0
    assert metrics.draft_length == max(1, min(32, round(metrics.cost_ratio)))


@pytest.mark.parametrize(
    "sampling", [SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, top_p=0.8)]
)
def test_worker_proposals_equal_the_inline_drafters_bit_for_bit(sampling):
    """What crosses the process boundary arrives exactly: roots, branches, confidences and the q
    rows that rules 1 and 4 divide by (a row rounded in transit would bias verification)."""
    draft = PAIR.draft
    inline = InlineLink(BranchDrafter(KVSequence(TorchBackend(draft, PAIR.vocab_size)), PAIR.eos_ids))
    options = WorkerOptions(threads=torch.get_num_threads())  # same kernels, same rounding as inline
    worker = WorkerLink(draft, PAIR.vocab_size, PAIR.eos_ids, options, TARGET.device)
    try:
        request = DraftRequest(PROMPT, sampling, seed=3, sampled=True, k_max=4, epsilon=0.05)
        decisions = [Decision(PROMPT, [], -1, 4)]
        for link in (inline, worker):
            link.start(request)
        for _ in range(6):
            for link in (inline, worker):
                link.send(decisions[-1])
            mine, theirs = inline.receive(), worker.receive()
            assert (mine.branches, mine.confidences) == (theirs.branches, theirs.confidences)
            assert torch.equal(mine.q_b, theirs.q_b) and torch.equal(mine.q_pending, theirs.q_pending)
            root, *rest = mine.branches[0]
            decisions.append(Decision([root], rest, 0, 4))
    finally:
        worker.close()
