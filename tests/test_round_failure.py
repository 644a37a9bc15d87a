"""A parallel round that fails mid-way leaves nothing stale on the engine.

Each round sends the draft a decision, runs the target forward, then reads the draft's
proposal. A failure in between (injected here into the target backend's `forward`) must not leave
that proposal unread for the next request: the engine's next request gives exactly a fresh
engine's tokens and round statistics (AR's tokens when greedy, the same tokens for the same seed
at temperature 1). Where the link cannot be kept in step it closes, so its owner rebuilds it.

Two-process cases spawn real draft worker processes (gloo over localhost). There a reply left
unread does not even reach the next request: the caller's next send waits for a worker that is
itself blocked sending that reply, until the worker timeout calls it hung.
"""

from __future__ import annotations

import functools
import itertools

import pytest
from helpers import make_pair, perturbed, tiny_model

from specbranch.config import GenerationConfig, SamplingParams
from specbranch.engine import Engine, GenerationResult, generate

TARGET = tiny_model(seed=1)
PAIR = make_pair(TARGET, perturbed(TARGET, 0.01, seed=2))
PROMPT = [3, 17, 42, 8, 8, 1]
OPTIONS = {
    "pearl": {"max_draft_len": 3},
    "specbranch": {"execution": "parallel", "k_max": 4, "epsilon": 0.1, "max_draft_len": 4},
}
TIMEOUT = 10  # worker_timeout, seconds: a link left out of step fails the next request this fast
GREEDY = GenerationConfig(max_new_tokens=30)
SAMPLED = GenerationConfig(max_new_tokens=30, sampling=SamplingParams(temperature=1.0), seed=7)
METHODS = pytest.mark.parametrize("method", ["pearl", "specbranch"])


def trace(result: GenerationResult) -> tuple:
    """What must match a fresh engine's run: tokens and the per-round counters (no timings)."""
    m = result.metrics
    counters = (m.drafted_tokens, m.accepted_tokens, m.branch_hits, m.draft_forwards)
    return result.token_ids, m.accept_lengths, counters


@functools.cache
def fresh(method: str, inline: bool) -> tuple[tuple, tuple]:
    """Traces of GREEDY then SAMPLED on a new engine."""
    with Engine(PAIR, method, inline=inline, **OPTIONS[method]) as engine:
        return trace(engine.generate(PROMPT, GREEDY)), trace(engine.generate(PROMPT, SAMPLED))


@functools.cache
def ar_tokens() -> list[int]:
    return generate(PAIR, PROMPT, "ar", GREEDY).token_ids


def fail_target_forward(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, call: int, error: BaseException
) -> None:
    """Make the target's `call`-th forward raise `error` (after that round's decision was sent)."""
    target = engine.decoder.target  # the target's backend
    real, calls = target.forward, itertools.count(1)

    def forward(*args, **kwargs):
        if next(calls) == call:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(target, "forward", forward)


def assert_next_requests_exact(engine: Engine, method: str, inline: bool) -> None:
    assert engine.alive()
    greedy, sampled = trace(engine.generate(PROMPT, GREEDY)), trace(engine.generate(PROMPT, SAMPLED))
    assert greedy[0] == ar_tokens()
    assert (greedy, sampled) == fresh(method, inline)


@METHODS
@pytest.mark.parametrize(
    "inline,error",
    [(True, RuntimeError), (False, RuntimeError), (False, KeyboardInterrupt)],
    ids=["inline", "two-process", "two-process-interrupt"],
)
def test_failed_round_leaves_the_next_request_exact(monkeypatch, method, inline, error):
    with Engine(PAIR, method, inline=inline, worker_timeout=TIMEOUT, **OPTIONS[method]) as engine:
        fail_target_forward(monkeypatch, engine, 3, error("injected target failure"))
        with pytest.raises(error, match="injected target failure"):
            engine.generate(PROMPT, SAMPLED)
        assert_next_requests_exact(engine, method, inline)


@METHODS
def test_abandoned_stream_leaves_the_next_request_exact(method):
    """A consumer that stops between rounds leaves no reply unread (each round completes before it yields)."""
    with Engine(PAIR, method, inline=False, worker_timeout=TIMEOUT, **OPTIONS[method]) as engine:
        stream = engine.stream(PROMPT, SAMPLED)
        next(stream)
        next(stream)
        stream.close()
        assert_next_requests_exact(engine, method, inline=False)


def test_drain_that_cannot_read_the_reply_closes_the_link(monkeypatch):
    """The target's error still surfaces; the link is closed, so its owner rebuilds it."""
    with Engine(PAIR, "specbranch", inline=False, **OPTIONS["specbranch"]) as engine:
        link = engine.decoder.link

        def lost(*args, **kwargs):
            raise RuntimeError("connection closed")

        monkeypatch.setattr(link.channel, "recv", lost)
        fail_target_forward(monkeypatch, engine, 1, RuntimeError("injected target failure"))
        with pytest.raises(RuntimeError, match="injected target failure"):
            engine.generate(PROMPT, GREEDY)
        assert not engine.alive()


def test_interrupted_receive_closes_the_link(monkeypatch):
    """An interrupt while the proposal is read (maybe mid-frame) leaves the link out of step: closed."""
    with Engine(PAIR, "specbranch", inline=False, **OPTIONS["specbranch"]) as engine:

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(engine.decoder.link.channel, "recv", interrupted)
        with pytest.raises(KeyboardInterrupt):
            engine.generate(PROMPT, GREEDY)
        assert not engine.alive()
