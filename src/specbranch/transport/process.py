"""The two-process transport: the draft in its own spawned process, the target in the caller's.

The caller (target side, where verification is decided) spawns one draft worker
(`python -m specbranch.transport SETTINGS_JSON`, see `__main__.py`) and talks to it over a
`torch.distributed` process group of two ranks: gloo on CPU, NCCL when both sides sit on
different CUDA devices. The group is built from its own TCP store, so several engines (each
with a worker) can coexist in one process.

Only decisions and tokens cross the boundary, plus the draft probability rows rule 1 and rule 4
need when drafting is sampled. Each message is a `codec.Frame` sent as a fixed header, then its
int64 values, float64 values and float32 rows (`_Channel`). Every receive on the caller's side
is bounded by `timeout`: a worker that dies surfaces at once (the connection closes), one that
hangs after `timeout` seconds, both as `WorkerError`. A failed or interrupted transfer aborts the
link (a half-moved frame would leave it out of step), and so does a `drain()` that cannot read
the reply it drops. `close()` stops the worker and reaps it; a finalizer kills it if the caller
forgets.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import weakref
from dataclasses import asdict, dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from specbranch.backends.base import KVSequence
from specbranch.backends.pytorch import TorchBackend
from specbranch.decoders.drafter import BranchDrafter
from specbranch.errors import WorkerError
from specbranch.probe import forward_seconds
from specbranch.transport.codec import (
    STOP_FRAME,
    Frame,
    Kind,
    decode_decision,
    decode_error,
    decode_hello,
    decode_proposal,
    decode_request,
    encode_decision,
    encode_error,
    encode_hello,
    encode_proposal,
    encode_request,
)
from specbranch.transport.messages import BranchProposal, Decision, DraftRequest

_HEADER = 5  # kind, n_ints, n_floats, n_rows, n_cols


@dataclass(frozen=True)
class WorkerOptions:
    """Where and how the draft worker runs.

    threads: torch threads in the draft worker; device: its device (None: the draft's own);
    master_addr / master_port: rendezvous of the two ranks (port 0 picks a free port);
    timeout: seconds any receive from the worker may take before it counts as hung;
    startup_timeout: seconds the worker may take to start and load the draft.
    """

    threads: int = 1
    device: str | None = None
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    timeout: float = 60.0
    startup_timeout: float = 300.0


class _Channel:
    """Frames over a two-rank process group (peer = the other rank)."""

    def __init__(self, group: dist.ProcessGroup, peer: int, device: torch.device) -> None:
        self.group, self.peer, self.device = group, peer, device

    def _send(self, tensor: torch.Tensor) -> None:
        self.group.send([tensor.to(self.device).contiguous()], self.peer, 0).wait()

    def _recv(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        tensor = torch.empty(shape, dtype=dtype, device=self.device)
        self.group.recv([tensor], self.peer, 0).wait()
        return tensor.cpu()

    def send(self, frame: Frame) -> None:
        rows = frame.rows
        n_rows, n_cols = (rows.shape[0], rows.shape[1]) if rows is not None else (0, 0)
        header = [int(frame.kind), len(frame.ints), len(frame.floats), n_rows, n_cols]
        self._send(torch.tensor(header, dtype=torch.long))
        if frame.ints:
            self._send(torch.tensor(list(frame.ints), dtype=torch.long))
        if frame.floats:
            self._send(torch.tensor(list(frame.floats), dtype=torch.float64))
        if n_rows:
            self._send(rows.float())

    def recv(self) -> Frame:
        kind, n_ints, n_floats, n_rows, n_cols = self._recv((_HEADER,), torch.long).tolist()
        ints = self._recv((n_ints,), torch.long).tolist() if n_ints else []
        floats = self._recv((n_floats,), torch.float64).tolist() if n_floats else []
        rows = self._recv((n_rows, n_cols), torch.float32) if n_rows else None
        return Frame(kind, ints, floats, rows)


def _group(store: dist.Store, rank: int, backend: str, timeout: timedelta) -> dist.ProcessGroup:
    prefixed = dist.PrefixStore("specbranch", store)
    if backend == "nccl":
        return dist.ProcessGroupNCCL(prefixed, rank, 2)
    return dist.ProcessGroupGloo(prefixed, rank, 2, timeout)


# --- draft worker (rank 1) ---------------------------------------------------------------


def _load_drafter(model_file: str, vocab_size: int, eos_ids: list[int], device: str | None) -> BranchDrafter:
    """The drafter over the draft model the caller saved to `model_file` (which is then removed)."""
    with warnings.catch_warnings():  # quantized-tensor deprecation notices on int8 drafts
        warnings.simplefilter("ignore")
        model = torch.load(model_file, weights_only=False)
    os.unlink(model_file)
    if device is not None:
        model = model.to(device)
    return BranchDrafter(KVSequence(TorchBackend(model, vocab_size)), frozenset(eos_ids))


def _serve(channel: _Channel, drafter: BranchDrafter) -> None:
    """Answer the caller's frames until STOP, a failure (reported as ERROR) or a lost caller."""
    while True:
        try:
            frame = channel.recv()
        except Exception:  # the caller went away: nothing left to serve
            return
        if frame.kind == Kind.STOP:
            return
        try:
            if frame.kind == Kind.START:
                drafter.start(decode_request(frame))
            elif frame.kind == Kind.DECISION:
                channel.send(encode_proposal(drafter.round(decode_decision(frame))))
        except Exception:
            channel.send(encode_error(traceback.format_exc()))
            return


def draft_worker_main(
    model_file: str, vocab_size: int, eos_ids: list[int], options: WorkerOptions, port: int, backend: str
) -> None:
    """Body of the draft process: load, measure one draft step, say HELLO, serve."""
    torch.set_num_threads(options.threads)
    store = dist.TCPStore(options.master_addr, port, 2, False, timedelta(seconds=options.startup_timeout))
    try:
        drafter = _load_drafter(model_file, vocab_size, eos_ids, options.device)
        step_seconds = forward_seconds(drafter.kv, new_tokens=1)
    except Exception:
        store.set("error", traceback.format_exc())
        raise
    store.set("ready", "1")
    device = drafter.kv.device if backend == "nccl" else torch.device("cpu")
    channel = _Channel(_group(store, 1, backend, timedelta(days=365)), 0, device)
    channel.send(encode_hello(step_seconds))
    _serve(channel, drafter)


# --- caller side (rank 0) ----------------------------------------------------------------


def _kill(process: subprocess.Popen, model_file: str) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(5)
    if os.path.exists(model_file):
        os.unlink(model_file)


class WorkerLink:
    """A `DraftLink` to a draft worker process; see the module docstring.

    draft_seconds: the worker's measured time of one draft step (for the cost ratio).
    """

    def __init__(
        self,
        draft: torch.nn.Module,
        vocab_size: int,
        eos_ids: frozenset[int],
        options: WorkerOptions,
        target_device: torch.device,
    ) -> None:
        draft_device = torch.device(options.device or next(draft.parameters()).device)
        both_cuda = draft_device.type == "cuda" and target_device.type == "cuda"
        backend = "nccl" if both_cuda and draft_device != target_device else "gloo"
        self.backend, self.timeout, self.broken = backend, options.timeout, False
        handle, self.model_file = tempfile.mkstemp(prefix="specbranch-draft-", suffix=".pt")
        with os.fdopen(handle, "wb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.save(draft, f)
        store = dist.TCPStore(
            options.master_addr, options.master_port, 2, True, timedelta(seconds=options.startup_timeout),
            wait_for_workers=False,
        )
        settings = {
            "model_file": self.model_file,
            "vocab_size": vocab_size,
            "eos_ids": sorted(eos_ids),
            "options": asdict(options),
            "port": store.port,
            "backend": backend,
        }
        command = [sys.executable, "-m", "specbranch.transport", json.dumps(settings)]
        self.process = subprocess.Popen(command)
        self._finalizer = weakref.finalize(self, _kill, self.process, self.model_file)
        self._wait_ready(store, options.startup_timeout)
        group = _group(store, 0, backend, timedelta(seconds=options.timeout))
        self.channel = _Channel(group, 1, draft_device if backend == "nccl" else torch.device("cpu"))
        self.store = store
        self.draft_seconds = decode_hello(self._expect(Kind.HELLO))

    def _wait_ready(self, store: dist.Store, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not store.check(["ready"]):
            if store.check(["error"]):
                message = store.get("error").decode()
                self._abort()
                raise WorkerError(f"the draft worker failed to start:\n{message}")
            if self.process.poll() is not None:
                self._abort()
                code = self.process.returncode
                raise WorkerError(f"the draft worker exited during start-up (exit code {code})")
            if time.monotonic() > deadline:
                self._abort()
                raise WorkerError(f"the draft worker did not start within {timeout:.0f} s")
            time.sleep(0.02)

    def _expect(self, kind: Kind) -> Frame:
        try:
            frame = self.channel.recv()
        except Exception as exc:  # gloo raises RuntimeError/DistBackendError on close or timeout
            raise self._failure(exc) from exc
        except BaseException:  # interrupted (KeyboardInterrupt), maybe mid-frame: out of step
            self._abort()
            raise
        if frame.kind == Kind.ERROR:
            self._abort()
            raise WorkerError("the draft worker failed:\n" + decode_error(frame))
        if frame.kind != kind:
            self._abort()
            raise WorkerError(f"protocol error: expected message {kind.name}, got kind {frame.kind}")
        return frame

    def _failure(self, exc: Exception) -> WorkerError:
        """Kill the worker after a failed transfer and say whether it died or hung."""
        alive = self.process.poll() is None
        self._abort()
        why = f"hung for more than {self.timeout:.0f} s" if alive else "died"
        return WorkerError(f"the draft worker {why} ({exc.__class__.__name__}: {exc})")

    def _send(self, frame: Frame) -> None:
        if self.process.poll() is not None:
            self._abort()
            raise WorkerError(f"the draft worker died (exit code {self.process.returncode})")
        try:
            self.channel.send(frame)
        except Exception as exc:
            raise self._failure(exc) from exc
        except BaseException:  # interrupted, maybe mid-frame: out of step
            self._abort()
            raise

    def start(self, request: DraftRequest) -> None:
        self._send(encode_request(request))

    def send(self, decision: Decision) -> None:
        self._send(encode_decision(decision))

    def receive(self) -> BranchProposal:
        return decode_proposal(self._expect(Kind.PROPOSAL))

    def drain(self) -> None:
        """Read and drop the proposal in flight (within `timeout`)."""
        with contextlib.suppress(WorkerError):  # `_expect` aborted the link: `alive()` is False
            self._expect(Kind.PROPOSAL)

    def alive(self) -> bool:
        """Whether the worker process runs and the link to it is intact."""
        return not self.broken and self.process.poll() is None

    def worker_pid(self) -> int | None:
        return self.process.pid

    def _abort(self) -> None:
        """Kill the worker without talking to it (the link is broken)."""
        self.broken = True
        self._finalizer()

    def close(self) -> None:
        """Stop the worker (politely, then by force) and reap it; safe to call twice."""
        if self.process.poll() is None and hasattr(self, "channel") and not self.broken:
            with contextlib.suppress(Exception):  # the worker is already gone or the link broke
                self.channel.send(STOP_FRAME)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        self._finalizer()
