"""The OpenAI wire format: request bodies, response and stream-chunk bodies, error bodies.

Requests are validated strictly (a string where a number belongs is an error, not a guess);
unknown fields are ignored, as OpenAI clients send extras. `top_k` and `ignore_eos` are
accepted as extras (vLLM's names). Responses are models too: every body and chunk starts with
the same `ResponseHeader` (id, object, created, model), and `model_dump()` gives the JSON object
sent, nulls included where OpenAI has them (`logprobs`, a chunk's `finish_reason`). What the
two generation routes answer differently is one `Endpoint` each. Everything here is pure data:
no model, no I/O.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

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
        """The JSON error body."""
        detail = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorBody(error=detail).model_dump()


class ErrorDetail(BaseModel):
    """OpenAI's error object; `param` and `code` are null when they do not apply."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


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


def speculative(result: GenerationResult, method: str) -> dict[str, Any]:
    """The per-request speculative metrics (the `speculative` object of a response)."""
    metrics = result.metrics.to_dict()
    metrics.pop("accept_lengths")
    return {"method": method, **metrics}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, result: GenerationResult) -> Usage:
        completion = len(result.token_ids)
        return cls(prompt_tokens=result.prompt_tokens, completion_tokens=completion,
                   total_tokens=result.prompt_tokens + completion)


class ResponseHeader(BaseModel):
    """What every response body and stream chunk starts with; `object` names the body's kind."""

    id: str
    object: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str


class TextChoice(BaseModel):
    """A /v1/completions choice: the whole text, or a chunk's piece of it."""

    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


class Delta(BaseModel):
    """What a chat chunk adds: the role (first chunk only), the text; unset fields are left out."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class _Response(ResponseHeader):
    """A whole (non-streamed) response."""

    choices: list
    usage: Usage
    speculative: dict[str, Any]

    @classmethod
    def of(cls, rid: str, model: str, result: GenerationResult, method: str) -> _Response:
        """The response for a finished generation."""
        return cls(id=rid, model=model, choices=[cls.choice(result)], usage=Usage.of(result),
                   speculative=speculative(result, method))

    @staticmethod
    def choice(result: GenerationResult) -> BaseModel:
        """The response's one choice (each kind of response builds its own)."""
        raise NotImplementedError


class CompletionResponse(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[TextChoice]

    @staticmethod
    def choice(result: GenerationResult) -> TextChoice:
        return TextChoice(text=result.text, finish_reason=result.finish_reason)


class ChatCompletionResponse(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]

    @staticmethod
    def choice(result: GenerationResult) -> ChatChoice:
        return ChatChoice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)


class _Chunk(ResponseHeader):
    """A stream chunk. The last one, sent when `stream_options.include_usage` is set, has no
    choices and carries usage and speculative; the others leave those two out."""

    choices: list
    usage: Usage | None = None
    speculative: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _usage_only_on_the_last(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if self.usage is None:
            del data["usage"], data["speculative"]
        return data

    @classmethod
    def of_text(
        cls, rid: str, model: str, text: str | None, finish_reason: str | None = None, first: bool = False
    ) -> _Chunk:
        """A chunk adding `text` (None: none, as in the chunk that only says why the stream ended);
        first: the stream's first chunk."""
        return cls(id=rid, model=model, choices=[cls.choice(text, finish_reason, first)])

    @classmethod
    def usage_chunk(cls, rid: str, model: str, result: GenerationResult, method: str) -> _Chunk:
        """The last chunk when the client asked for usage: no choices, usage and speculative filled in."""
        usage, metrics = Usage.of(result), speculative(result, method)
        return cls(id=rid, model=model, choices=[], usage=usage, speculative=metrics)

    @staticmethod
    def choice(text: str | None, finish_reason: str | None, first: bool) -> BaseModel:
        """The chunk's one choice (each kind of chunk builds its own)."""
        raise NotImplementedError


class CompletionChunk(_Chunk):
    object: Literal["text_completion"] = "text_completion"
    choices: list[TextChoice]

    @staticmethod
    def choice(text: str | None, finish_reason: str | None, first: bool) -> TextChoice:
        return TextChoice(text=text or "", finish_reason=finish_reason)


class ChatCompletionChunk(_Chunk):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]

    @staticmethod
    def choice(text: str | None, finish_reason: str | None, first: bool) -> ChatChunkChoice:
        delta = Delta(role="assistant" if first else None, content=text)
        return ChatChunkChoice(delta=delta, finish_reason=finish_reason)


@dataclass(frozen=True)
class Endpoint:
    """What differs between the two generation routes' answers: the response id prefix, the
    response and chunk models, and the max_tokens of a request that gives none (None: the
    server's `default_max_tokens`)."""

    id_prefix: str
    response: type[CompletionResponse] | type[ChatCompletionResponse]
    chunk: type[CompletionChunk] | type[ChatCompletionChunk]
    default_max_tokens: int | None = None

    def new_id(self) -> str:
        return f"{self.id_prefix}-{uuid.uuid4().hex[:24]}"


COMPLETIONS = Endpoint("cmpl", CompletionResponse, CompletionChunk, COMPLETIONS_DEFAULT_MAX_TOKENS)
CHAT_COMPLETIONS = Endpoint("chatcmpl", ChatCompletionResponse, ChatCompletionChunk)
