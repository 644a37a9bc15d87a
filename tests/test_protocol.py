"""The OpenAI wire format of responses: exact JSON bodies, nulls where OpenAI has them."""

from __future__ import annotations

from specbranch.engine import GenerationResult
from specbranch.metrics import GenerationMetrics
from specbranch.server.protocol import CHAT_COMPLETIONS, COMPLETIONS, APIError

RESULT = GenerationResult("hi", [5, 6], "length", 3, GenerationMetrics(new_tokens=2, target_forwards=2))
HEADER = {"id": "r", "created": 7, "model": "m"}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def dump(body) -> dict:
    return body.model_copy(update={"created": 7}).model_dump()


def test_whole_responses_share_the_header_and_carry_usage_and_metrics():
    text = dump(COMPLETIONS.response.of("r", "m", RESULT, "sd"))
    speculative = text.pop("speculative")
    assert text == {**HEADER, "object": "text_completion", "usage": USAGE, "choices": [
        {"index": 0, "text": "hi", "logprobs": None, "finish_reason": "length"}]}
    assert speculative["method"] == "sd" and speculative["mean_accepted_length"] == 1.0
    assert "accept_lengths" not in speculative
    chat = dump(CHAT_COMPLETIONS.response.of("r", "m", RESULT, "sd"))
    assert chat["object"] == "chat.completion" and list(chat)[:4] == ["id", "object", "created", "model"]
    assert chat["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}]


def test_chunks_keep_openai_nulls_and_leave_out_unset_delta_fields_and_usage():
    chunk = CHAT_COMPLETIONS.chunk
    assert dump(chunk.of_text("r", "m", "a", first=True)) == {**HEADER, "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "a"}, "finish_reason": None}]}
    assert dump(chunk.of_text("r", "m", "b"))["choices"][0]["delta"] == {"content": "b"}
    assert dump(chunk.of_text("r", "m", None, "stop"))["choices"] == [
        {"index": 0, "delta": {}, "finish_reason": "stop"}]
    text = dump(COMPLETIONS.chunk.of_text("r", "m", None, "stop"))
    assert text["object"] == "text_completion" and "usage" not in text
    assert text["choices"] == [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]
    last = dump(chunk.usage_chunk("r", "m", RESULT, "sd"))
    assert last["choices"] == [] and last["usage"] == USAGE and last["speculative"]["method"] == "sd"


def test_error_bodies_name_param_and_code_or_null():
    assert APIError(503, "busy", "server_error").body() == {
        "error": {"message": "busy", "type": "server_error", "param": None, "code": None}}
    assert APIError(400, "bad", param="stop", code="x").body()["error"] == {
        "message": "bad", "type": "invalid_request_error", "param": "stop", "code": "x"}
