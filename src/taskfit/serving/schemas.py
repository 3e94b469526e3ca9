"""What ``taskfit serve`` takes and answers: its settings, the request bodies (validated by pydantic, bounded
before anything is parsed further) and the one error shape (OpenAI's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch_size: int = 16  # inputs per forward pass across concurrent requests
    max_wait_ms: float = 10.0  # how long a batch waits for more inputs after its first
    max_body_bytes: int = 1_000_000
    max_inputs: int = 64  # inputs in one request
    max_text_chars: int = 20_000
    max_new_tokens: int = 512
    timeout_s: float = 60.0


# -- request bodies -------------------------------------------------------------------------------------


class TextInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    text_pair: str | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str | TextInput] = Field(
        ..., min_length=1, description="texts, or {text, text_pair} objects"
    )


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class _OpenAIBase(BaseModel):
    """Fields both OpenAI endpoints share; unknown OpenAI options are accepted and ignored, as clients send
    some (e.g. stream_options) by default."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="one choice per prompt")
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _bounded_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop: up to 4 non-empty strings of at most 64 characters")
        return value


class ChatRequest(_OpenAIBase):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_OpenAIBase):
    prompt: str | list[str]


# -- errors ---------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def error_body(
    message: str, kind: str, param: str | None = None, code: str | None = None, request_id: str | None = None
) -> dict:
    error = {"message": message, "type": kind, "param": param, "code": code}
    if request_id:
        error["request_id"] = request_id  # the id the server log has the traceback under
    return {"error": error}
