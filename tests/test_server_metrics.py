"""GET /metrics: Prometheus' text format, scraped from a live server and read with Prometheus' parser.

A server on tiny random models (test_server's) answers a few requests from the official
`openai` client; the scraped counters and histograms must equal what those answers report
(usage, the `speculative` metrics), and the JSON counters stay at /v1/metrics.
"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
import pytest
import test_server
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from test_server import NAME, client, get, post, running_server, tiny_pair

from specbranch.server.monitoring import STATUSES, status_of
from specbranch.server.protocol import APIError

P = "specbranch:"
HISTOGRAMS = ("time_to_first_token_seconds", "time_per_output_token_seconds", "request_mean_accepted_length")

Samples = dict[tuple[str, tuple], float]


def scrape(url: str) -> Samples:
    """GET /metrics parsed: {(sample name, its labels but model_name): value}; checks the content
    type and that every sample is labelled with the served model."""
    with urllib.request.urlopen(url + "/metrics", timeout=60) as response:
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("model_name") == NAME
            samples[sample.name, tuple(sorted(labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[P + name, tuple(sorted(labels.items()))]


def requests_by_status(samples: Samples) -> dict[str, float]:
    return {status: value(samples, "requests_total", status=status) for status in STATUSES}


@dataclass
class Traffic:
    """What the clients were told: each successful answer's usage and speculative metrics."""

    url: str
    usages: list[openai.types.CompletionUsage]
    speculative: list[dict]
    samples: Samples


@pytest.fixture(scope="module")
def traffic():
    """A fresh server: one completion, one streamed chat, a 404 and a 400; then one scrape."""
    with running_server("sd") as (url, _):
        answer = client(url).completions.create(
            model=NAME, prompt="the cat sat on the mat", max_tokens=30, temperature=0
        )
        stream = client(url).chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hello there"}], max_tokens=25,
            temperature=0, stream=True, stream_options={"include_usage": True},
        )
        last = list(stream)[-1]
        with pytest.raises(openai.NotFoundError):
            client(url).completions.create(model="other", prompt="hi", max_tokens=5)
        with pytest.raises(openai.BadRequestError):
            client(url).completions.create(model=NAME, prompt="hi", max_tokens=-3)
        extras = [answer.model_extra["speculative"], last.model_extra["speculative"]]
        yield Traffic(url, [answer.usage, last.usage], extras, scrape(url))


def test_requests_are_counted_by_status(traffic):
    expected = dict.fromkeys(STATUSES, 0) | {"ok": 2, "invalid": 2}
    assert requests_by_status(traffic.samples) == expected


def test_token_counters_equal_the_answers_usage(traffic):
    s = traffic.samples
    assert value(s, "generation_tokens_total") == sum(u.completion_tokens for u in traffic.usages) > 0
    assert value(s, "prompt_tokens_total") == sum(u.prompt_tokens for u in traffic.usages) > 0


def test_spec_decode_counters_map_the_requests_metrics(traffic):
    s, extras = traffic.samples, traffic.speculative
    drafts = value(s, "spec_decode_num_drafts_total")
    draft_tokens = value(s, "spec_decode_num_draft_tokens_total")
    accepted = value(s, "spec_decode_num_accepted_tokens_total")
    assert drafts == sum(e["target_forwards"] for e in extras) > 0  # sd drafts every round
    assert draft_tokens == sum(e["verified_tokens"] for e in extras) > 0
    assert accepted == sum(e["accepted_tokens"] for e in extras)
    # a vLLM dashboard's acceptance rate is the server's own
    assert accepted / draft_tokens == pytest.approx(get(traffic.url, "/v1/metrics")[1]["acceptance_rate"])


def test_histograms_observe_each_successful_request(traffic):
    s = traffic.samples
    for name in HISTOGRAMS:
        assert value(s, name + "_count") == value(s, name + "_bucket", le="+Inf") == 2, name
        assert value(s, name + "_sum") > 0, name
    accepted_lengths = sum(e["mean_accepted_length"] for e in traffic.speculative)
    assert value(s, "request_mean_accepted_length_sum") == pytest.approx(accepted_lengths)
    assert value(s, "request_mean_accepted_length_bucket", le="1.0") == 0  # sd accepted something
    seconds_per_token = sum(e["wall_seconds"] / u.completion_tokens
                            for e, u in zip(traffic.speculative, traffic.usages, strict=True))
    assert value(s, "time_per_output_token_seconds_sum") == pytest.approx(seconds_per_token)


def test_gauges_read_the_idle_scheduler(traffic):
    s = traffic.samples
    assert value(s, "num_requests_waiting") == value(s, "num_requests_running") == 0
    assert value(s, "worker_restarts") == 0


def test_json_stays_at_v1_metrics_and_format_json(traffic):
    status, data = get(traffic.url, "/v1/metrics")
    assert status == 200 and (status, data) == get(traffic.url, "/metrics?format=json")
    assert data["method"] == "sd" and data["model"] == NAME and data["completed"] == 2
    assert data["completion_tokens"] == value(traffic.samples, "generation_tokens_total")
    assert get(traffic.url, "/metrics?format=yaml")[0] == 422


@pytest.fixture
def long_requests(monkeypatch):
    """running_server serves a pair with a 4096-token context, so one request runs for seconds."""
    monkeypatch.setattr(test_server, "PAIR", tiny_pair(max_positions=4096))


def wait_for(url: str, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until the sample `name` reads `expected` (10 s at most); the last scrape."""
    deadline = time.monotonic() + 10
    while value(samples := scrape(url), name, **labels) != expected:
        assert time.monotonic() < deadline, f"{name}{labels} never read {expected}"
        time.sleep(0.05)
    return samples


def test_gauges_rejection_and_cancellation_under_load(long_requests):
    with running_server("sd", max_queue=1, max_batch=1) as (url, _), ThreadPoolExecutor(1) as pool:
        long = dict(model=NAME, prompt="go", max_tokens=3000, temperature=0, extra_body={"ignore_eos": True})
        stream = client(url).completions.create(stream=True, **long)
        next(iter(stream))  # the long request is running
        waiting = pool.submit(client(url).completions.create, model=NAME, prompt="next", max_tokens=5)
        samples = wait_for(url, "num_requests_waiting", 1)
        assert value(samples, "num_requests_running") == 1
        with pytest.raises(openai.InternalServerError) as info:
            client(url).completions.create(model=NAME, prompt="third", max_tokens=5)
        assert info.value.status_code == 503 and info.value.code == "queue_full"
        stream.close()  # the client goes away: its job is cancelled, the waiting one runs
        assert waiting.result(timeout=60).usage.completion_tokens > 0
        wait_for(url, "requests_total", 1, status="cancelled")
        samples = wait_for(url, "num_requests_running", 0)  # the decode thread is done with the last one
        assert requests_by_status(samples) == dict.fromkeys(STATUSES, 0) | {"ok": 1, "rejected": 1,
                                                                             "cancelled": 1}
        assert value(samples, "num_requests_waiting") == 0
        assert value(samples, "time_to_first_token_seconds_count") == 2


def test_a_request_over_the_timeout_counts_as_timeout():
    with running_server("sd", request_timeout=0.05) as (url, _):
        body = {"model": NAME, "prompt": "go", "max_tokens": 230, "temperature": 0, "ignore_eos": True}
        assert post(url, "/v1/completions", body)[0] == 504
        assert requests_by_status(scrape(url)) == dict.fromkeys(STATUSES, 0) | {"timeout": 1}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (APIError(400, "bad"), "invalid"),
        (APIError(404, "no such model", code="model_not_found"), "invalid"),
        (APIError(499, "client disconnected"), "cancelled"),
        (APIError(503, "busy", "server_error", code="queue_full"), "rejected"),
        (APIError(503, "decode worker failure", "server_error"), "error"),
        (APIError(500, "internal error", "server_error"), "error"),
        (APIError(504, "too long", "timeout"), "timeout"),
    ],
)
def test_every_error_answer_has_a_status(error, status):
    assert status_of(error) == status
