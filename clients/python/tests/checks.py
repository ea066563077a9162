"""Assertions reading every field the team's response models declare."""

from __future__ import annotations

import base64
import struct
from datetime import datetime, timedelta
from typing import Optional

from sparklio_desk import LLMProviderResponse, MediaProviderResponse

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _recent(ts: datetime) -> None:
    assert isinstance(ts, datetime)
    assert ts.tzinfo is None, "timestamps are naive UTC, like the team's datetime.utcnow()"
    now = datetime.utcnow()
    assert now - timedelta(minutes=5) < ts < now + timedelta(minutes=5), ts


def check_llm(resp: LLMProviderResponse, *, role: str, task: str, mode: str, provider: str) -> None:
    assert isinstance(resp, LLMProviderResponse)
    assert resp.provider == provider
    assert isinstance(resp.model, str) and resp.model
    assert set(resp.usage) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert all(isinstance(v, int) for v in resp.usage.values())
    assert resp.usage["total_tokens"] == resp.usage["prompt_tokens"] + resp.usage["completion_tokens"]
    assert resp.usage["total_tokens"] > 0
    expected_type = "json" if mode == "json" else "text"
    assert resp.output.type == expected_type
    if expected_type == "json":
        assert isinstance(resp.output.value, dict) and resp.output.value
    else:
        assert isinstance(resp.output.value, str) and resp.output.value.strip()
    assert isinstance(resp.meta, dict)
    assert resp.meta["task"] == task
    assert resp.meta["mode"] == mode
    assert resp.meta["request_id"]
    assert resp.meta["role"]  # the Desk reports the canonical role (aliases resolved)
    _recent(resp.timestamp)
    # The whole answer stays reachable for callers that want the Desk's extra keys.
    assert resp.raw["output"]["type"] == expected_type


def png_size(data: bytes) -> tuple:
    assert data[:8] == PNG_MAGIC, data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_media(
    resp: MediaProviderResponse,
    *,
    provider: str,
    base64_data: bool,
    size: Optional[tuple] = None,
    count: int = 1,
) -> list:
    """Checks every field; returns the decoded images when `base64_data`."""
    assert isinstance(resp, MediaProviderResponse)
    assert resp.provider == provider
    assert isinstance(resp.model, str) and resp.model
    assert isinstance(resp.usage, dict) and "generation_time" in resp.usage
    assert isinstance(resp.meta, dict)
    _recent(resp.timestamp)
    assert len(resp.outputs) == count
    images = []
    for out in resp.outputs:
        assert out.type == "image"
        assert out.format == "png"
        assert isinstance(out.width, int) and isinstance(out.height, int)
        if size is not None:
            assert (out.width, out.height) == size
        assert out.duration is None
        if base64_data:
            raw = base64.b64decode(out.data, validate=True)
            assert png_size(raw) == (out.width, out.height)
            images.append(raw)
        else:
            assert out.data.startswith("http://"), out.data[:60]
    return images
