"""The load benchmark (`specbranch bench-serve`): a real server under concurrent streaming clients.

For each concurrency C, each max-batch setting and each method (in that nesting, so the
configurations compared at one concurrency run back to back, and a slow spell of a shared
machine hits them alike; the table lists them by method), a server (`server.app` under
uvicorn in this process, on the model pair loaded once) runs the method with that
`--max-batch` ("auto": C), and C clients of the official `openai` client stream chat
completions at once, each sending its share of the prompts one after another. Every
configuration gets the same prompts in the same order (the datasets' prompts interleaved, so
each client mixes them) and greedy decoding unless a temperature is given.

Figures of a configuration (`summarize`):
- aggregate tokens/s: completion tokens of every request over the wall time from the first
  request sent to the last answer's end;
- full-load tokens/s: the tokens streamed while every client had a request in flight (from the
  first request sent until the first client has its last answer) over that time. A client's
  requests follow one another, so when requests go at different speeds (speculation accepts more
  on some prompts) the clients that finish first leave the last requests a smaller batch, and
  the aggregate counts that tail; the full-load rate is the server's throughput under the whole
  load. A request's tokens are spread evenly over its content chunks. A server that queues
  (max-batch below the clients) counts queued requests as in flight, so there the window holds
  mostly the requests served first: compare its aggregate, which has no tail to leave out;
- per-request tokens/s: a request's completion tokens over its time from sent to end (mean);
- TTFT: from a request sent to its first content chunk, p50 and p95;
- ITL: the gaps between consecutive content chunks of a stream, p50 and p95 (a chunk is what a
  round committed, so with speculation it may carry several tokens);
- batching ceiling tokens/s (one-at-a-time rows only, max-batch 1): the most any server could
  reach on the same requests at this concurrency if no request goes faster beside others than
  alone. The one-at-a-time server serves each request alone, first come first served, so a
  request's alone seconds are from its service start (it was sent, and the request before it
  ended) to its end; a client sends its requests one after another, so no server ends before the
  client whose requests' alone seconds add up to most has had them all: completion tokens over
  that sum. Its ratio to the one-at-a-time aggregate bounds what batching can gain on this load;
- mean batch size: the server's decode rounds' mean number of requests (`/v1/metrics`);
- rounds by mode: what the tree controller chose (plain / lookup / draft rounds, summed over
  the requests; `/v1/metrics`), empty for methods without it;
- request records (results.json only): each request's prompt, client, times sent, of its first
  chunk and of its end (seconds since the configuration's first request), and its completion
  tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from specbranch.bench.methods import MethodSpec
from specbranch.datasets import BenchPrompt
from specbranch.engine import Engine
from specbranch.errors import SpecBranchError
from specbranch.models import ModelPair

SERVED_NAME = "bench"  # the model id the benchmark's server serves
# A request's deadline, in the server and in its client: the benchmark measures throughput, and
# a one-at-a-time server keeps its last client waiting for every other (the server's default 300 s
# would abandon it).
REQUEST_TIMEOUT = 3600.0


@dataclass(frozen=True)
class LoadConfig:
    """One bench-serve run: methods x max_batches x concurrency, each on the same prompts.

    max_batches: "auto" (= the concurrency) or a number; requests_per_client: requests each
    client sends, one after another; temperature 0 is greedy.
    """

    methods: list[MethodSpec]
    prompts: list[BenchPrompt]
    concurrency: list[int]
    max_batches: list[str]
    requests_per_client: int = 2
    max_tokens: int = 128
    temperature: float = 0.0


@dataclass
class RequestRecord:
    """One streamed request: the client that sent it, when, its content chunks' arrival times, its
    end, and its completion tokens (the usage the server reported)."""

    prompt: str
    client: int
    sent: float
    chunks: list[float] = field(default_factory=list)
    end: float = 0.0
    tokens: int = 0

    def to_dict(self, origin: float) -> dict:
        """What results.json keeps of it, its times in seconds since `origin`."""
        first = self.chunks[0] - origin if self.chunks else None
        return {"prompt": self.prompt, "client": self.client, "sent": self.sent - origin,
                "first_chunk": first, "end": self.end - origin, "tokens": self.tokens}


@contextlib.contextmanager
def serving(pair: ModelPair, method: MethodSpec, max_batch: int) -> Iterator[str]:
    """A server of `method` on `pair` with --max-batch max_batch on a free port; its /v1 URL."""
    import uvicorn

    from specbranch.server.app import ServerConfig, create_app

    config = ServerConfig(
        SERVED_NAME, method.method, max_queue=1024, max_batch=max_batch, request_timeout=REQUEST_TIMEOUT
    )
    app = create_app(pair, lambda: Engine(pair, method.method, method.spec, **method.options), config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SpecBranchError(f"the benchmark's server for {method.name} did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(60)


async def _one_request(client, index: int, prompt: BenchPrompt, config: LoadConfig) -> RequestRecord:
    record = RequestRecord(prompt.question_id, index, time.perf_counter())
    stream = await client.chat.completions.create(
        model=SERVED_NAME,
        messages=[{"role": "user", "content": prompt.text}],
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            record.chunks.append(time.perf_counter())
        if chunk.usage is not None:
            record.tokens = chunk.usage.completion_tokens
    record.end = time.perf_counter()
    return record


async def _drive(url: str, concurrency: int, config: LoadConfig) -> tuple[list[RequestRecord], float]:
    """C clients at once, client i sending prompts i, i + C, ...; (records, wall seconds)."""
    import openai

    total = concurrency * config.requests_per_client
    prompts = [config.prompts[k % len(config.prompts)] for k in range(total)]
    async def client_loop(i: int) -> list[RequestRecord]:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT)
        async with client:
            return [await _one_request(client, i, p, config) for p in prompts[i::concurrency]]

    start = time.perf_counter()
    per_client = await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    return [r for records in per_client for r in records], time.perf_counter() - start


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def full_load_rate(records: list[RequestRecord]) -> float:
    """Tokens/s while every client had a request in flight (module docstring)."""
    start = min(r.sent for r in records)
    stop = min(max(r.end for r in records if r.client == c) for c in {r.client for r in records})
    streamed = sum(r.tokens * sum(t <= stop for t in r.chunks) / len(r.chunks) for r in records if r.chunks)
    return streamed / (stop - start) if stop > start else 0.0


def ceiling_rate(records: list[RequestRecord]) -> float:
    """The batching ceiling (module docstring) from a one-at-a-time server's records."""
    busy: dict[int, float] = {}  # per client: its requests' alone seconds
    previous_end = min(r.sent for r in records)
    for r in sorted(records, key=lambda r: r.end):
        busy[r.client] = busy.get(r.client, 0.0) + r.end - max(r.sent, previous_end)
        previous_end = r.end
    longest = max(busy.values())
    return sum(r.tokens for r in records) / longest if longest > 0 else 0.0


def summarize(records: list[RequestRecord], wall: float) -> dict:
    """The figures of one configuration (module docstring)."""
    tokens = sum(r.tokens for r in records)
    ttft = [r.chunks[0] - r.sent for r in records if r.chunks]
    gaps = [b - a for r in records for a, b in zip(r.chunks, r.chunks[1:], strict=False)]
    ttft50, ttft95 = _percentiles(ttft)
    itl50, itl95 = _percentiles(gaps)
    return {
        "requests": len(records),
        "completion_tokens": tokens,
        "wall_seconds": wall,
        "aggregate_tokens_per_second": tokens / wall if wall > 0 else 0.0,
        "full_load_tokens_per_second": full_load_rate(records),
        "request_tokens_per_second": float(np.mean([r.tokens / (r.end - r.sent) for r in records])),
        "ttft_p50": ttft50,
        "ttft_p95": ttft95,
        "itl_p50": itl50,
        "itl_p95": itl95,
    }


def run_load(pair: ModelPair, config: LoadConfig, progress: bool = True) -> list[dict]:
    """Every configuration's figures (rows: method, max_batch, concurrency, the summary), by
    method, then max-batch setting, then concurrency."""
    rows = []
    for concurrency in config.concurrency:
        for setting in config.max_batches:
            for method in config.methods:
                max_batch = concurrency if setting == "auto" else int(setting)
                rows.append(_run_configuration(pair, config, method, setting, max_batch, concurrency))
                if progress:
                    print(
                        f"{method.name} max-batch {max_batch} x{concurrency}: "
                        f"{rows[-1]['aggregate_tokens_per_second']:.1f} tok/s", flush=True
                    )
    names = [m.name for m in config.methods]
    return sorted(rows, key=lambda r: (names.index(r["method"]), config.max_batches.index(r["setting"])))


def _run_configuration(
    pair: ModelPair, config: LoadConfig, method: MethodSpec, setting: str, max_batch: int, concurrency: int
) -> dict:
    """One configuration's row: a server of `method` with `max_batch`, `concurrency` clients."""
    import json
    import urllib.request

    with serving(pair, method, max_batch) as url:
        records, wall = asyncio.run(_drive(url, concurrency, config))
        origin = min(r.sent for r in records)
        with urllib.request.urlopen(f"{url}/metrics") as answer:
            served = json.load(answer)
    return {"method": method.name, "max_batch": max_batch, "setting": setting,
            "concurrency": concurrency, **summarize(records, wall),
            "ceiling_tokens_per_second": ceiling_rate(records) if max_batch == 1 else None,
            "request_records": [r.to_dict(origin) for r in records],
            "mean_batch_size": served["mean_batch_size"],
            "rounds_by_mode": served["rounds_by_mode"]}
