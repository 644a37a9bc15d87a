"""The decode scheduler: one engine, one decode thread, a bounded first-come first-served queue.

The HTTP handlers never touch the models. They `submit` a `Job` (token ids + generation
config); the decode thread runs jobs one at a time, in arrival order, and hands each round's
`Chunk` back to the handler's event loop. Between rounds it checks whether the client went
away (the job is cancelled) and whether the request's deadline passed. A full queue is
refused at once (`QueueFull`, answered 503).

Faults: a draft worker that dies or hangs surfaces as `WorkerError` in the running job (its
client gets an error) and the engine is rebuilt at once; while idle the thread also checks
the engine every `health_interval` seconds, so a worker that dies between requests is
replaced before the next one. `/health` reads `health()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from specbranch.config import GenerationConfig
from specbranch.engine import Chunk, Engine
from specbranch.errors import SpecBranchError, WorkerError
from specbranch.metrics import GenerationMetrics
from specbranch.server.protocol import APIError

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The waiting queue is at its bound."""


@dataclass
class Job:
    """One request as the decode thread sees it.

    events: the handler's queue; receives `Chunk`s, then either a chunk carrying the result
    or an `APIError`. deadline: `time.monotonic()` after which the request is abandoned.
    """

    prompt_ids: list[int]
    config: GenerationConfig
    deadline: float
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: Chunk | APIError) -> None:
        """Hand an item to the handler (thread-safe; dropped if the server loop is gone)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)


# The rates of `GenerationMetrics` that /metrics reports (over all finished generations).
SERVER_RATES = (
    "mean_accepted_length",
    "acceptance_rate",
    "rollback_rate",
    "draft_waste",
    "branch_hit_rate",
    "tokens_per_second",
)


@dataclass
class ServerStats:
    """Counters since start-up; `totals` sums the metrics of every finished generation."""

    requests: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    timed_out: int = 0
    prompt_tokens: int = 0
    totals: GenerationMetrics = field(default_factory=GenerationMetrics)

    def to_dict(self) -> dict:
        """The /metrics counters; the rates are `GenerationMetrics`' of the totals."""
        t = self.totals
        return {
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected_queue_full": self.rejected,
            "timed_out": self.timed_out,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": t.new_tokens,
            "target_forwards": t.target_forwards,
            **{name: t.rate(name) for name in SERVER_RATES},
            "decode_seconds": t.wall_seconds,
        }


class Scheduler:
    """Runs jobs on one engine in a background thread; see the module docstring.

    make_engine: builds a fresh engine (called at start and after a worker fault).
    max_queue: jobs that may wait while one runs; request_timeout: seconds from arrival.
    """

    def __init__(
        self,
        make_engine: Callable[[], Engine],
        max_queue: int = 32,
        request_timeout: float = 300.0,
        health_interval: float = 1.0,
    ) -> None:
        if max_queue < 1:
            raise SpecBranchError(f"max_queue must be >= 1, got {max_queue}")
        self.make_engine = make_engine
        self.request_timeout = request_timeout
        self.health_interval = health_interval
        self.stats = ServerStats()
        self.restarts = 0
        self.last_error: str | None = None
        self.running: Job | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self.engine: Engine | None = make_engine()
        self._thread = threading.Thread(target=self._loop, name="specbranch-decode", daemon=True)
        self._thread.start()

    # --- called from the event loop -------------------------------------------------------

    def submit(self, prompt_ids: list[int], config: GenerationConfig) -> Job:
        """Queue a job (raises QueueFull when the queue is at its bound)."""
        job = Job(prompt_ids, config, time.monotonic() + self.request_timeout, asyncio.get_running_loop())
        with self._lock:
            self.stats.requests += 1
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.stats.rejected += 1
                raise QueueFull from None
        return job

    def health(self) -> dict:
        """Status for /health: "ok", or "error" when no engine could be built or the thread died."""
        ok = self._thread.is_alive() and self.engine is not None
        return {
            "status": "ok" if ok else "error",
            "waiting": self._queue.qsize(),
            "max_queue": self._queue.maxsize,
            "running": self.running is not None,
            "worker_restarts": self.restarts,
            "last_error": self.last_error,
        }

    def metrics(self) -> dict:
        with self._lock:
            return {**self.stats.to_dict(), "waiting": self._queue.qsize(), "worker_restarts": self.restarts}

    def close(self) -> None:
        """Stop the decode thread (after the running job's current round) and the engine."""
        self._stop.set()
        self._thread.join(timeout=30)
        if self.engine is not None:
            self.engine.close()

    # --- the decode thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=self.health_interval)
            except queue.Empty:
                self._ensure_engine()
                continue
            self.running = job
            try:
                self._run(job)
            finally:
                self.running = None

    def _ensure_engine(self) -> Engine | None:
        """The engine, rebuilt first if it is missing or its worker died."""
        if self.engine is not None and self.engine.alive():
            return self.engine
        if self.engine is not None:
            self._restart("the draft worker died")
        else:
            self._restart(self.last_error or "no engine")
        return self.engine

    def _restart(self, reason: str) -> None:
        log.warning("restarting the decode engine: %s", reason)
        self.last_error = reason
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.close()
        self.engine = None
        try:
            self.engine = self.make_engine()
            self.restarts += 1
        except Exception as exc:  # keep serving errors rather than dying; /health says "error"
            self.last_error = f"{reason}; rebuilding the engine failed: {exc}"
            log.error(self.last_error)

    def _finish(self, job: Job, outcome: str, error: APIError | None = None) -> None:
        with self._lock:
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        if error is not None:
            job.emit(error)

    def _run(self, job: Job) -> None:
        if job.cancelled.is_set():
            return self._finish(job, "cancelled")
        if time.monotonic() > job.deadline:
            return self._finish(job, "timed_out", _timeout_error(self.request_timeout))
        engine = self._ensure_engine()
        if engine is None:
            error = APIError(503, f"the decode engine is unavailable: {self.last_error}", "server_error")
            return self._finish(job, "failed", error)
        stream = engine.stream(job.prompt_ids, job.config)
        try:
            for chunk in stream:
                job.emit(chunk)
                if chunk.result is not None:
                    with self._lock:
                        self.stats.prompt_tokens += chunk.result.prompt_tokens
                        self.stats.totals.merge(chunk.result.metrics)
                    return self._finish(job, "completed")
                if job.cancelled.is_set():
                    return self._finish(job, "cancelled")
                if time.monotonic() > job.deadline:
                    return self._finish(job, "timed_out", _timeout_error(self.request_timeout))
        except WorkerError as exc:
            self._finish(job, "failed", APIError(503, f"decode worker failure: {exc}", "server_error"))
            self._restart(str(exc))
        except SpecBranchError as exc:
            self._finish(job, "failed", APIError(400, str(exc)))
        except Exception as exc:
            log.exception("generation failed")
            self._finish(job, "failed", APIError(500, f"internal error: {exc}", "server_error"))
        finally:
            stream.close()
        return None


def _timeout_error(seconds: float) -> APIError:
    return APIError(504, f"the request took longer than the server's {seconds:g} s limit", "timeout")
