"""The OpenAI wire format: request bodies, response and stream-chunk bodies, error bodies.

Requests are validated strictly (a string where a number belongs is an error, not a guess);
unknown fields are ignored, as OpenAI clients send extras. `top_k` and `ignore_eos` are
accepted as extras (vLLM's names). Everything here is pure data: no model, no I/O.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specbranch.config import GenerationConfig, SamplingParams
from specbranch.engine import GenerationResult
from specbranch.errors import SpecBranchError

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class APIError(Exception):
    """An error answered with an OpenAI-style body: {"error": {message, type, param, code}}."""

    def __init__(
        self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Strict):
    include_usage: bool = False


class _SamplingFields(_Strict):
    """Fields shared by both endpoints."""

    model: str
    max_tokens: int | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="only one choice per request is supported")
    ignore_eos: bool = False

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def generation_config(self, default_max_tokens: int, random_seed: int) -> GenerationConfig:
        """The decoder's view of the request (a random seed when none was given)."""
        max_tokens = self.requested_max_tokens()
        max_tokens = max_tokens if max_tokens is not None else default_max_tokens
        if max_tokens < 1:
            raise APIError(400, f"max_tokens must be >= 1, got {max_tokens}", param="max_tokens")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4 or any(not s for s in stop):
            raise APIError(400, "stop takes up to 4 non-empty strings", param="stop")
        try:
            sampling = SamplingParams(self.temperature, self.top_k, self.top_p)
            seed = self.seed if self.seed is not None else random_seed
            return GenerationConfig(max_tokens, sampling, seed, tuple(stop), self.ignore_eos)
        except SpecBranchError as exc:
            raise APIError(400, str(exc)) from None


class CompletionRequest(_SamplingFields):
    """POST /v1/completions. prompt: a string, a one-string list, or token ids."""

    prompt: str | list[str] | list[int]

    def prompt_input(self) -> str | list[int]:
        if isinstance(self.prompt, list) and self.prompt and isinstance(self.prompt[0], str):
            if len(self.prompt) != 1:
                raise APIError(400, "only one prompt per request is supported", param="prompt")
            return self.prompt[0]
        return self.prompt


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart]

    def as_dict(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_SamplingFields):
    """POST /v1/chat/completions; `max_completion_tokens` is the newer name of max_tokens."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def chat_messages(self) -> list[dict]:
        return [m.as_dict() for m in self.messages]


def parse_request(raw: bytes, model: type[_Strict]) -> _Strict:
    """Validate a JSON body; bad JSON or wrong fields raise APIError(400) naming the field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise APIError(400, f"the request body is not valid JSON: {first['msg']}") from None
        path = [str(p) for p in first["loc"] if not _is_type_tag(p)]  # drop union-member tags
        param = ".".join(path) or None
        raise APIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None


def _is_type_tag(part: object) -> bool:
    """Pydantic names the union member in an error path (`prompt.str`); those are not fields."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def speculative(result: GenerationResult, method: str) -> dict:
    """The per-request speculative metrics (the `speculative` object of a response)."""
    metrics = result.metrics.to_dict()
    metrics.pop("accept_lengths")
    return {"method": method, **metrics}


def completion_body(kind: str, rid: str, model: str, result: GenerationResult, method: str) -> dict:
    """A whole (non-streamed) response; kind is "text_completion" or "chat.completion"."""
    if kind == "chat.completion":
        choice = {"index": 0, "message": {"role": "assistant", "content": result.text}}
    else:
        choice = {"index": 0, "text": result.text, "logprobs": None}
    choice["finish_reason"] = result.finish_reason
    return {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(result.prompt_tokens, len(result.token_ids)),
        "speculative": speculative(result, method),
    }


def chunk_body(
    kind: str, rid: str, model: str, text: str | None, finish_reason: str | None = None, first: bool = False
) -> dict:
    """One stream chunk; kind is "text_completion" or "chat.completion.chunk"."""
    if kind == "chat.completion.chunk":
        delta: dict = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None}
    choice["finish_reason"] = finish_reason
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}


def usage_chunk_body(kind: str, rid: str, model: str, result: GenerationResult, method: str) -> dict:
    """The last chunk when stream_options.include_usage is set: no choices, usage filled in."""
    return {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(result.prompt_tokens, len(result.token_ids)),
        "speculative": speculative(result, method),
    }
