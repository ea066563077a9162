"""Response models, field for field the team's in-process gateway models.

`LLMProviderOutput` / `LLMProviderResponse` mirror `backend/app/services/llm/providers/base.py`,
`MediaProviderOutput` / `MediaProviderResponse` mirror `backend/app/services/media/providers/base.py`
of the Sparklio backend: same names, same types, same defaults, so code written against those
models reads these unchanged.

Two things differ only where the wire forces it, both documented in the README:
- the Desk's answers carry more keys (`output.content`, `outputs[].url`, `job_id`, ...); the
  models keep the team's fields and ignore the rest, while `raw` (a property, not a field) holds
  the whole answer body for callers that want it;
- `timestamp` is normalised to a naive UTC `datetime`, the kind `datetime.utcnow()` (the team's
  default) gives, so it can be compared with the team's own timestamps.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, Field, PrivateAttr, field_validator

__all__ = [
    "LLMProviderOutput",
    "LLMProviderResponse",
    "MediaProviderOutput",
    "MediaProviderResponse",
]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class _WithRaw(BaseModel):
    _raw: Dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> Dict[str, Any]:
        """The Desk's whole answer body (empty for models built locally)."""
        return self._raw

    @classmethod
    def from_desk(cls, body: Dict[str, Any]):
        model = cls.model_validate(body)
        model._raw = body
        return model


class LLMProviderOutput(BaseModel):
    """type: "text" | "json"; value: the generated text, or the JSON object."""

    type: Literal["text", "json"] = Field(..., description="출력 타입 (text 또는 json)")
    value: Union[str, Dict[str, Any]] = Field(..., description="생성된 결과 (문자열 또는 JSON)")


class LLMProviderResponse(_WithRaw):
    """The LLM gateway's standard answer."""

    provider: str = Field(..., description="Provider 벤더명 (ollama, openai, anthropic 등)")
    model: str = Field(..., description="사용된 모델명")
    usage: Dict[str, int] = Field(
        default_factory=dict,
        description="토큰 사용량 (prompt_tokens, completion_tokens, total_tokens)",
    )
    output: LLMProviderOutput = Field(..., description="생성된 결과 (구조화)")
    meta: Dict[str, Any] = Field(
        default_factory=dict, description="메타데이터 (latency, temperature, top_p 등)"
    )
    timestamp: datetime = Field(default_factory=_utcnow, description="응답 생성 시각")

    @field_validator("timestamp", mode="after")
    @classmethod
    def timestamp_as_naive_utc(cls, value: datetime) -> datetime:
        return _naive_utc(value)


class MediaProviderOutput(BaseModel):
    """One generated medium; `data` is base64 or a URL (the Desk's `media.default_return`,
    a key's `media_return`, or `options.return` decide)."""

    type: Literal["image", "video", "audio"] = Field(..., description="미디어 타입")
    format: str = Field(..., description="미디어 포맷 (png, jpg, mp4, wav 등)")
    data: str = Field(..., description="Base64 인코딩된 데이터 또는 URL")
    width: Optional[int] = Field(None, description="이미지/비디오 너비 (픽셀)")
    height: Optional[int] = Field(None, description="이미지/비디오 높이 (픽셀)")
    duration: Optional[float] = Field(None, description="비디오/오디오 길이 (초)")


class MediaProviderResponse(_WithRaw):
    """The media gateway's standard answer."""

    provider: str = Field(..., description="Provider 벤더명 (comfyui, dalle, midjourney 등)")
    model: str = Field(..., description="사용된 모델명 또는 워크플로우명")
    usage: Dict[str, Any] = Field(
        default_factory=dict, description="리소스 사용량 (generation_time, vram_used 등)"
    )
    outputs: List[MediaProviderOutput] = Field(..., description="생성된 미디어 목록")
    meta: Dict[str, Any] = Field(
        default_factory=dict, description="메타데이터 (seed, steps, cfg_scale 등)"
    )
    timestamp: datetime = Field(default_factory=_utcnow, description="응답 생성 시각")

    @field_validator("timestamp", mode="after")
    @classmethod
    def timestamp_as_naive_utc(cls, value: datetime) -> datetime:
        return _naive_utc(value)
