"""The server's Prometheus metrics (GET /metrics), one `ServerMonitor` per app.

Names carry the prefix `specbranch:` (as vLLM's carry `vllm:`) and every series the label
`model_name` (the served model id), so a vLLM dashboard maps over by renaming the prefix. A
*request* here is a POST to /v1/completions or /v1/chat/completions; it *finishes* when its
answer is decided: a response body, the end of its stream, or an error.

Counters (exposed with the suffix `_total`):
- `specbranch:requests{status}`: finished requests by status: `ok` (answered with a
  generation), `invalid` (400/404: a bad body, an over-long prompt, an unknown model),
  `rejected` (503: the queue was full), `timeout` (504: older than --request-timeout),
  `cancelled` (the client went away), `error` (503/500: the engine failed or was down);
- `specbranch:prompt_tokens`, `specbranch:generation_tokens`: the prompt and generated tokens
  of `ok` requests (their `usage.prompt_tokens` and `usage.completion_tokens`);
- speculative decoding, named after vLLM's spec-decode counters and counted over `ok` requests
  from their `GenerationMetrics`:
  `specbranch:spec_decode_num_drafts` = verification rounds (target forwards) of requests that
  drafted at all (a method without a draft, `ar`, adds none): each round verifies one draft
  proposal, possibly empty (prompt lookup without a match);
  `specbranch:spec_decode_num_draft_tokens` = draft tokens the target verified (tokens drafted
  but thrown away unverified, e.g. a parallel round's lost branch, are not counted);
  `specbranch:spec_decode_num_accepted_tokens` = verified draft tokens the target accepted.
  So, as on vLLM's dashboards, num_accepted_tokens / num_draft_tokens is the acceptance rate
  (exactly /v1/metrics' `acceptance_rate`), and 1 + num_accepted_tokens / num_drafts the mean
  accepted length where each round commits its accepted tokens and one more (sd, lookup, serial
  trees; unless a stop condition cut a round). A parallel PEARL/SpecBranch round that hits a
  branch commits no extra token, so there that formula reads high: the histogram below, and
  /v1/metrics' `mean_accepted_length`, are the exact figures.

Histograms:
- `specbranch:time_to_first_token_seconds`: from a request's arrival to its first decoded
  round reaching the handler (queueing and prefill included), observed for every request that
  got that far;
- `specbranch:time_per_output_token_seconds`: an `ok` request's decode time (the engine's, from
  taking the request to its last token) divided by its generated tokens, the inverse of its
  `tokens_per_second`;
- `specbranch:request_mean_accepted_length`: an `ok` request's mean accepted length (generated
  tokens / target forwards; 1.0 for `ar`).

Gauges (read from the scheduler at scrape time):
- `specbranch:num_requests_waiting`: requests in the queue;
- `specbranch:num_requests_running`: requests being decoded (at most --max-batch);
- `specbranch:worker_restarts`: times the decode engine was rebuilt after its draft worker
  died or hung, since start-up (a gauge, as the issue that asked for it names it; it only
  grows, so `increase()` over it reads like a counter's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from specbranch.engine import GenerationResult
from specbranch.server.protocol import APIError

PREFIX = "specbranch:"
STATUSES = ("ok", "invalid", "rejected", "timeout", "cancelled", "error")
DISCONNECTED = 499  # the status of the APIError raised when a client went away (nginx's code)

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                0.75, 1.0, 2.5, 5.0, 10.0)
ACCEPTED_LENGTH_BUCKETS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0)


def status_of(error: APIError) -> str:
    """The `requests` status of a request answered with `error` (module docstring)."""
    if error.status == DISCONNECTED:
        return "cancelled"
    if error.status == 504:
        return "timeout"
    if error.code == "queue_full":
        return "rejected"
    return "invalid" if 400 <= error.status < 500 else "error"


class ServerMonitor:
    """The metrics of one app in their own registry (apps in one process never share series).

    health: the scheduler's `health()` (read at each scrape for the gauges and restarts).
    """

    def __init__(self, model_name: str, health: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, doc: str) -> Counter:
            return Counter(PREFIX + name, doc, ["model_name"], registry=self.registry).labels(model_name)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            metric = Histogram(PREFIX + name, doc, ["model_name"], buckets=buckets, registry=self.registry)
            return metric.labels(model_name)

        requests = Counter(PREFIX + "requests", "finished requests by status", ["model_name", "status"],
                           registry=self.registry)
        self.requests = {status: requests.labels(model_name, status) for status in STATUSES}
        self.prompt_tokens = counter("prompt_tokens", "prompt tokens of ok requests")
        self.generation_tokens = counter("generation_tokens", "generated tokens of ok requests")
        self.num_drafts = counter("spec_decode_num_drafts", "verification rounds of requests that drafted")
        self.num_draft_tokens = counter("spec_decode_num_draft_tokens", "draft tokens the target verified")
        self.num_accepted_tokens = counter("spec_decode_num_accepted_tokens", "accepted draft tokens")
        self.ttft = histogram("time_to_first_token_seconds", "arrival to first decoded round",
                              TTFT_BUCKETS)
        self.tpot = histogram("time_per_output_token_seconds", "decode time / generated tokens",
                              TPOT_BUCKETS)
        self.accepted_length = histogram("request_mean_accepted_length",
                                         "generated tokens / target forwards", ACCEPTED_LENGTH_BUCKETS)
        self.registry.register(_SchedulerCollector(model_name, health))

    def first_token(self, seconds: float) -> None:
        """A request's first decoded round reached its handler `seconds` after it arrived."""
        self.ttft.observe(seconds)

    def finished(self, status: str, result: GenerationResult | None = None) -> None:
        """A request finished with `status`; `result` is its generation when it is "ok"."""
        self.requests[status].inc()
        if result is None:
            return
        m = result.metrics
        self.prompt_tokens.inc(result.prompt_tokens)
        self.generation_tokens.inc(len(result.token_ids))
        self.num_drafts.inc(m.target_forwards if m.drafted_tokens_total else 0)
        self.num_draft_tokens.inc(m.verified_tokens)
        self.num_accepted_tokens.inc(m.accepted_tokens)
        if result.token_ids:
            self.tpot.observe(m.wall_seconds / len(result.token_ids))
        self.accepted_length.observe(m.mean_accepted_length)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _SchedulerCollector(Collector):
    """The series read from the scheduler's `health()` at scrape time."""

    def __init__(self, model_name: str, health: Callable[[], dict]) -> None:
        self.model_name, self.health = model_name, health

    def describe(self) -> Iterator[Metric]:
        return self._families({"waiting": 0, "running": 0, "worker_restarts": 0})

    def collect(self) -> Iterator[Metric]:
        return self._families(self.health())

    def _families(self, state: dict) -> Iterator[Metric]:
        series = (
            (GaugeMetricFamily, "num_requests_waiting", "requests waiting in the queue", state["waiting"]),
            (GaugeMetricFamily, "num_requests_running", "requests being decoded", state["running"]),
            (GaugeMetricFamily, "worker_restarts", "decode engine rebuilds after a worker fault",
             state["worker_restarts"]),
        )
        for family, name, doc, value in series:
            metric = family(PREFIX + name, doc, labels=["model_name"])
            metric.add_metric([self.model_name], value)
            yield metric
