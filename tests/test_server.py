"""The OpenAI-compatible server: a real uvicorn server on localhost, the official `openai` client.

Models are tiny random Llamas with a character tokenizer (and a chat template), so every
test runs in seconds; greedy answers are compared with the library's AR output.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import uvicorn
from helpers import char_tokenizer, perturbed, tiny_model

from specbranch.config import GenerationConfig
from specbranch.engine import Engine
from specbranch.models import ModelPair
from specbranch.server import ServerConfig, create_app
from specbranch.server.scheduler import Scheduler, off_main_thread

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} says {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant says {% endif %}"
)
NAME = "tiny"


def tiny_pair(max_positions: int = 256) -> ModelPair:
    tokenizer = char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    target = tiny_model(vocab=len(tokenizer), seed=3, eos=0, max_positions=max_positions)
    draft = perturbed(target, 0.02, seed=4)
    return ModelPair.from_models(target, draft, tokenizer, tokenizer, NAME)


PAIR = tiny_pair()


@contextlib.contextmanager
def running_server(method: str = "sd", pair: ModelPair = PAIR, options: dict | None = None, **settings):
    """Start the app under uvicorn in a thread; yield (base URL, app); stop it afterwards."""
    config = ServerConfig(NAME, method, **settings)
    if options is None:
        options = {"max_draft_len": 4} if method in ("pearl", "specbranch") else {}
        if method == "specbranch":  # a draft worker to kill: auto would pick the mode by timing
            options["execution"] = "parallel"
    app = create_app(pair, lambda: Engine(pair, method, **options), config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def library_ar(prompt, max_tokens: int) -> str:
    with Engine(PAIR, "ar") as engine:
        return engine.generate(prompt, GenerationConfig(max_new_tokens=max_tokens)).text


def post(url: str, path: str, body: bytes | dict) -> tuple[int, dict]:
    """POST raw bytes or a JSON object; (status, parsed JSON body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + path, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def sd_server():
    with running_server("sd") as (url, app):
        yield url, app


def test_models_health_and_metrics_endpoints(sd_server):
    url, _ = sd_server
    assert [m.id for m in client(url).models.list().data] == [NAME]
    status, health = get(url, "/health")
    assert status == 200 and health["status"] == "ok" and health["method"] == "sd"
    status, metrics = get(url, "/v1/metrics")
    assert status == 200
    for key in ("requests", "completion_tokens", "mean_accepted_length", "acceptance_rate",
                "rollback_rate", "tokens_per_second"):
        assert key in metrics


def test_greedy_completion_equals_library_ar_streamed_or_not(sd_server):
    url, _ = sd_server
    prompt = "the cat sat on the mat"
    expected = library_ar(prompt, 40)
    answer = client(url).completions.create(model=NAME, prompt=prompt, max_tokens=40, temperature=0)
    assert answer.choices[0].text == expected
    assert answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.model_extra["speculative"]["method"] == "sd"
    assert answer.model_extra["speculative"]["mean_accepted_length"] >= 1.0

    stream = client(url).completions.create(
        model=NAME, prompt=prompt, max_tokens=40, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_chat_completion_uses_the_template_and_equals_library_ar(sd_server):
    url, _ = sd_server
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    expected = library_ar(messages, 30)
    answer = client(url).chat.completions.create(model=NAME, messages=messages, max_tokens=30, temperature=0)
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == expected
    stream = client(url).chat.completions.create(
        model=NAME, messages=messages, max_tokens=30, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_seed_makes_sampled_answers_reproducible(sd_server):
    url, _ = sd_server
    ask = dict(model=NAME, prompt="a b c", max_tokens=30, temperature=1.0, extra_body={"top_k": 20})
    first = client(url).completions.create(seed=7, **ask).choices[0].text
    assert client(url).completions.create(seed=7, **ask).choices[0].text == first
    others = {client(url).completions.create(seed=s, **ask).choices[0].text for s in range(8, 12)}
    assert others - {first}  # other seeds really sample something else


def test_eight_concurrent_clients_all_get_complete_correct_answers(sd_server):
    url, _ = sd_server
    prompts = [f"prompt number {chr(ord('a') + i)} goes here" for i in range(8)]
    expected = [library_ar(p, 30) for p in prompts]

    def ask(prompt: str) -> str:
        answer = client(url).completions.create(model=NAME, prompt=prompt, max_tokens=30, temperature=0)
        return answer.choices[0].text

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, prompts)) == expected


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", b"{not json", 400, None),
        ("/v1/completions", {"model": "other", "prompt": "hi"}, 404, "model"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "max_tokens": -3}, 400, "max_tokens"),
        ("/v1/completions", {"model": NAME, "prompt": "a" * 300}, 400, "prompt"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "temperature": "hot"}, 400, "temperature"),
        ("/v1/completions", {"model": NAME, "prompt": 42}, 400, "prompt"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "top_p": 0}, 400, "top_p"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "n": 2}, 400, "n"),
        ("/v1/completions", {"prompt": "hi"}, 400, "model"),
        ("/v1/chat/completions", {"model": NAME, "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": NAME, "messages": [{"role": "user"}]}, 400, "messages.0.content"),
    ],
)
def test_bad_requests_get_4xx_with_openai_error_body(sd_server, path, body, status, param):
    url, _ = sd_server
    got, answer = post(url, path, body)
    assert got == status
    assert answer["error"]["message"] and answer["error"]["type"]
    if param is not None:
        assert answer["error"]["param"] == param
    assert get(url, "/health")[0] == 200  # and the server keeps serving


def test_over_long_prompt_is_named_as_context_overflow(sd_server):
    url, _ = sd_server
    with pytest.raises(openai.BadRequestError) as info:
        client(url).completions.create(model=NAME, prompt="a" * 300, max_tokens=5)
    assert info.value.code == "context_length_exceeded"


def test_full_queue_answers_503():
    with running_server("sd", max_queue=1, max_batch=1) as (url, _):
        def ask(_: int) -> int | str:
            try:
                client(url).completions.create(
                    model=NAME, prompt="go", max_tokens=200, temperature=0, extra_body={"ignore_eos": True}
                )
                return 200
            except openai.APIStatusError as error:
                return f"{error.status_code} {error.code}"

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(ask, range(6)))
        assert outcomes.count(200) >= 2  # the running request and the one waiting
        assert "503 queue_full" in outcomes
        assert set(outcomes) <= {200, "503 queue_full"}
        assert get(url, "/v1/metrics")[1]["rejected_queue_full"] == outcomes.count("503 queue_full")


def test_disconnect_mid_stream_cancels_and_the_next_request_is_served(sd_server):
    url, _ = sd_server
    before = get(url, "/v1/metrics")[1]["cancelled"]
    stream = client(url).completions.create(
        model=NAME, prompt="go", max_tokens=220, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 10
    while get(url, "/v1/metrics")[1]["cancelled"] == before:
        assert time.monotonic() < deadline, "the disconnected generation was not cancelled"
        time.sleep(0.05)
    answer = client(url).completions.create(model=NAME, prompt="the end", max_tokens=20, temperature=0)
    assert answer.choices[0].text == library_ar("the end", 20)


def test_request_over_the_timeout_gets_504():
    with running_server("sd", request_timeout=0.05) as (url, _):
        status, answer = post(url, "/v1/completions", {
            "model": NAME, "prompt": "go", "max_tokens": 230, "temperature": 0, "ignore_eos": True,
        })
        assert status == 504 and answer["error"]["type"] == "timeout"
        assert get(url, "/v1/metrics")[1]["timed_out"] == 1


def test_dead_draft_worker_is_restarted_and_reported_on_health():
    with running_server("specbranch") as (url, app):
        prompt = "the dog ran"
        expected = library_ar(prompt, 30)
        ask = dict(model=NAME, prompt=prompt, max_tokens=30, temperature=0)
        assert client(url).completions.create(**ask).choices[0].text == expected
        app.state.scheduler.engine.decoder.link.process.kill()
        deadline = time.monotonic() + 60
        while get(url, "/health")[1]["worker_restarts"] < 1:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        status, health = get(url, "/health")
        assert status == 200 and health["status"] == "ok" and "died" in health["last_error"]
        assert client(url).completions.create(**ask).choices[0].text == expected


def test_the_engine_is_built_off_the_main_thread_and_its_errors_still_reach_the_caller():
    """`Scheduler` builds its engine in a thread that ends with it (`off_main_thread`), so the
    process's main thread runs no parallel torch work (`scripts/thread_tax.py`); the builder's
    value comes back and its exception is raised in the caller."""
    builders: list[threading.Thread] = []

    def make_engine() -> Engine:
        builders.append(threading.current_thread())
        return Engine(PAIR, "ar")

    scheduler = Scheduler(make_engine)
    try:
        assert scheduler.engine is not None and builders and builders[0] is not threading.main_thread()
    finally:
        scheduler.close()
    with pytest.raises(ZeroDivisionError):
        off_main_thread(lambda: 1 / 0)
