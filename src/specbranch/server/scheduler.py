"""The decode scheduler: one engine, one decode thread, continuous batching, a bounded queue.

The HTTP handlers never touch the models. They `submit` a `Job` (token ids + generation
config); the decode thread keeps up to `max_batch` jobs *active* and runs their rounds
together (`Engine.advance`: each plans, one target forward over every active job's tokens,
each settles on its own rows), handing each round's `Chunk` back to the job's handler. Jobs
join and leave between rounds, in arrival order: a newcomer's prompt rides in the next round's
forward, and a job that finishes, fails, is cancelled (its client went away) or passes its
deadline leaves without touching the others' outputs. A full queue is refused at once
(`QueueFull`, answered 503). `max_batch` 1 decodes one job at a time. A decoder whose rounds do
not split in plan and settle (the parallel methods' draft worker holds one request) runs one
job at a time whatever `max_batch` says; a job waits while the backends' caches cannot hold it
beside the active ones (`Engine.fits`).

Faults: a draft worker that dies or hangs surfaces as `WorkerError` in the running jobs (their
clients get an error) and the engine is rebuilt at once; while idle the thread also checks
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
from typing import TypeVar

from specbranch.config import GenerationConfig
from specbranch.engine import Chunk, Engine, Generation
from specbranch.errors import SpecBranchError, WorkerError
from specbranch.metrics import GenerationMetrics
from specbranch.server.protocol import APIError

log = logging.getLogger(__name__)
T = TypeVar("T")


def off_main_thread(work: Callable[[], T]) -> T:
    """work() run in a thread that ends with it: its value, or its exception raised here.

    A server process keeps parallel torch work (loading the models, building an engine) off its
    main thread. Once the main thread has an OpenMP pool, which lives as long as the process, the
    decode thread's pool makes more OpenMP threads than cores, its workers sleep between parallel
    regions instead of spinning, and the int8 draft's small ops run up to 2x slower
    (`scripts/thread_tax.py`). A thread's pool goes with the thread."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # raised again in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="specbranch-build")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


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
    generation: Generation | None = None  # set when the job becomes active

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
    rounds: int = 0  # decode rounds run
    round_requests: int = 0  # over those rounds, the requests each ran (their mean: the batch size)
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
            "decode_rounds": self.rounds,
            "mean_batch_size": self.round_requests / self.rounds if self.rounds else 0.0,
            "completion_tokens": t.new_tokens,
            "target_forwards": t.target_forwards,
            "rounds_by_mode": dict(t.rounds_by_mode),
            **{name: t.rate(name) for name in SERVER_RATES},
            "decode_seconds": t.wall_seconds,
        }


class Scheduler:
    """Runs jobs on one engine in a background thread; see the module docstring.

    make_engine: builds a fresh engine (called at start and after a worker fault).
    max_queue: jobs that may wait beyond the active ones; request_timeout: seconds from
    arrival; max_batch: jobs decoded together.
    """

    def __init__(
        self,
        make_engine: Callable[[], Engine],
        max_queue: int = 32,
        request_timeout: float = 300.0,
        health_interval: float = 1.0,
        max_batch: int = 1,
    ) -> None:
        if max_queue < 1 or max_batch < 1:
            raise SpecBranchError(f"max_queue and max_batch must be >= 1, got {max_queue}, {max_batch}")
        self.make_engine = make_engine
        self.request_timeout = request_timeout
        self.health_interval = health_interval
        self.max_batch = max_batch
        self.stats = ServerStats()
        self.restarts = 0
        self.last_error: str | None = None
        self.active: list[Job] = []
        self._held: Job | None = None  # taken from the queue, waiting for room in the caches
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self.engine: Engine | None = off_main_thread(make_engine)
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
            "waiting": self._waiting(),
            "max_queue": self._queue.maxsize,
            "running": len(self.active),
            "max_batch": self.max_batch,
            "worker_restarts": self.restarts,
            "last_error": self.last_error,
        }

    def metrics(self) -> dict:
        with self._lock:
            return {
                **self.stats.to_dict(),
                "waiting": self._waiting(),
                "running": len(self.active),
                "worker_restarts": self.restarts,
            }

    def _waiting(self) -> int:
        """Jobs not yet active: queued, or taken from the queue and held for room."""
        return self._queue.qsize() + (self._held is not None)

    def close(self) -> None:
        """Stop the decode thread (after the current round) and the engine."""
        self._stop.set()
        self._thread.join(timeout=30)
        if self.engine is not None:
            self.engine.close()

    # --- the decode thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._admit()
            if not self.active:
                self._ensure_engine()
                continue
            self._round()

    def _admit(self) -> None:
        """Move waiting jobs, in arrival order, to the active set while it has room (waiting a
        while for one when idle); a job the caches cannot hold yet waits at the head."""
        while len(self.active) < self._batch():
            job, self._held = self._held, None
            if job is None:
                wait = None if self.active else self.health_interval  # idle: wait a while
                try:
                    job = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
                except queue.Empty:
                    return
            engine = self.engine
            active = [j.generation for j in self.active]
            if active and engine is not None and not engine.fits(active, job.prompt_ids, job.config):
                self._held = job
                return
            self._start(job)

    def _batch(self) -> int:
        """How many jobs may be active: max_batch, or one where the decoder runs rounds one job
        at a time."""
        engine = self.engine
        return self.max_batch if engine is not None and engine.decoder.plans_rounds else 1

    def _start(self, job: Job) -> None:
        if job.cancelled.is_set():
            return self._finish(job, "cancelled")
        if time.monotonic() > job.deadline:
            return self._finish(job, "timed_out", _timeout_error(self.request_timeout))
        engine = self._ensure_engine()
        if engine is None:
            error = APIError(503, f"the decode engine is unavailable: {self.last_error}", "server_error")
            return self._finish(job, "failed", error)
        try:
            job.generation = engine.begin(job.prompt_ids, job.config)
        except SpecBranchError as exc:
            return self._finish(job, "failed", APIError(400, str(exc)))
        self.active.append(job)
        return None

    def _round(self) -> None:
        """One round of every active job; each job's chunk handed out, finished jobs removed."""
        for job in list(self.active):
            if job.cancelled.is_set():
                self._leave(job, "cancelled")
            elif time.monotonic() > job.deadline:
                self._leave(job, "timed_out", _timeout_error(self.request_timeout))
        if not self.active:
            return
        jobs = list(self.active)
        with self._lock:
            self.stats.rounds += 1
            self.stats.round_requests += len(jobs)
        outcomes = self.engine.advance([job.generation for job in jobs])
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._fail(job, outcome)
                continue
            job.emit(outcome)
            if outcome.result is not None:
                with self._lock:
                    self.stats.prompt_tokens += outcome.result.prompt_tokens
                    self.stats.totals.merge(outcome.result.metrics)
                self._leave(job, "completed")
        if any(isinstance(o, WorkerError) for o in outcomes):
            for job in list(self.active):  # their requests lived in the failed engine
                self._fail(job, WorkerError("the engine was rebuilt"))
            self._restart(str(next(o for o in outcomes if isinstance(o, WorkerError))))

    def _fail(self, job: Job, exc: Exception) -> None:
        """End an active job with the error its exception means."""
        if isinstance(exc, WorkerError):
            error = APIError(503, f"decode worker failure: {exc}", "server_error")
        elif isinstance(exc, SpecBranchError):
            error = APIError(400, str(exc))
        else:
            log.error("generation failed", exc_info=exc)
            error = APIError(500, f"internal error: {exc}", "server_error")
        self._leave(job, "failed", error)

    def _leave(self, job: Job, outcome: str, error: APIError | None = None) -> None:
        self.active.remove(job)
        job.generation = None  # its KV sequences are released with it
        self._finish(job, outcome, error)

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


def _timeout_error(seconds: float) -> APIError:
    return APIError(504, f"the request took longer than the server's {seconds:g} s limit", "timeout")
