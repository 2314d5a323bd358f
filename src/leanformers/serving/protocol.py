"""Request bodies as pydantic models mirroring OpenAI's schema (vLLM's entrypoints/openai/protocol.py, in small).

Unknown fields are refused (a typo must not be silently ignored); a few OpenAI fields that change nothing here are
accepted (`user`, `service_tier`, `store`, `metadata`); the extras vLLM users know (`top_k`, `min_tokens`,
`repetition_penalty`, `ignore_eos`) are there too.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_RANGE = {"ge": -(2 ** 63), "lt": 2 ** 64}


class Strict(BaseModel):
    """A request body that refuses unknown fields (400 naming them)."""
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict):
    """stream_options: include_usage adds a last chunk with the token counts."""
    include_usage: bool = False


class TextPart(Strict):
    """One text part of a message's content list."""
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    """One chat message; content is a string or a list of text parts."""
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The content as one string."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


def _check_stop(value):
    stops = [value] if isinstance(value, str) else list(value or [])
    if len(stops) > 4:
        raise ValueError("`stop` takes at most 4 sequences")
    if any(not s for s in stops):
        raise ValueError("`stop` sequences must be non-empty strings")
    return value


class SamplingFields(Strict):
    """The decoding settings chat and completions share."""
    model: str | None = Field(None, description="a served model id (GET /v1/models); optional here")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; default 1")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, **SEED_RANGE, description="choice i samples with seed + i")
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM's extensions
    top_k: int | None = Field(None, ge=0, le=100000)
    min_p: float | None = Field(None, ge=0, le=1)
    min_tokens: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    ignore_eos: bool = False
    skip_special_tokens: bool = True

    _stop = field_validator("stop")(lambda cls, v: _check_stop(v))

    def stops(self) -> tuple[str, ...]:
        """`stop` as a tuple of strings."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="deprecated by OpenAI for max_completion_tokens")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None


class CompletionRequest(SamplingFields):
    """POST /v1/completions (a prompt string, a list of them, token ids, or a list of token-id lists)."""
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool | None = False
    best_of: int | None = Field(None, ge=1, le=8)
    suffix: str | None = None


class EmbeddingRequest(Strict):
    """POST /v1/embeddings."""
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class TaskRequest(Strict):
    """POST /v1/pipelines/{task}: the Hugging Face Inference API body."""
    inputs: Any = Field(description="what pipeline(task) takes: a text, a list of texts, {question, context}, ...")
    parameters: dict[str, Any] = Field(default_factory=dict, description="pipeline call options (top_k, ...)")
    options: dict[str, Any] | None = Field(None, description="the Inference API's options (accepted, unused)")


class TokenizeRequest(Strict):
    """POST /tokenize: a prompt, or chat messages through the chat template."""
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(Strict):
    """POST /detokenize."""
    model: str | None = None
    tokens: list[int]
