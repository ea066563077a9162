"""The opt-in mock fallback: shaped answers made locally when the Desk is unreachable.

Only used when a gateway is built with `mock_fallback=True` or the environment says
`SPARKLIO_DESK_MOCK_FALLBACK=1`. Every answer is marked: `provider == "mock-fallback"`,
`meta["fallback"] is True`, `meta["fallback_reason"]` says why, so a test or a log can never take
it for a real one. Errors the Desk itself answers (400, 503, ...) are never replaced.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any, Dict, Optional

from .models import LLMProviderOutput, LLMProviderResponse, MediaProviderOutput, MediaProviderResponse

__all__ = ["FALLBACK_PROVIDER", "llm_fallback", "media_fallback", "png_bytes"]

FALLBACK_PROVIDER = "mock-fallback"

# The designer agent's sizes per task (backend/app/services/agents/designer.py).
_TASK_SIZES = {
    "product_image": (1024, 1024),
    "brand_logo": (512, 512),
    "sns_thumbnail": (1200, 630),
    "ad_banner": (1920, 1080),
    "illustration": (1024, 1024),
}


def _shape(structure: Any, path: str) -> Any:
    """A value in the shape an agent's `_output_structure` describes: nested objects keep their
    keys, every described leaf becomes a marked text."""
    if isinstance(structure, dict):
        return {k: _shape(v, f"{path}.{k}" if path else k) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_shape(structure[0], path)] if structure else []
    return f"[mock-fallback] {path}: {structure}"


def llm_fallback(
    role: str,
    task: str,
    payload: Dict[str, Any],
    mode: str,
    override_model: Optional[str],
    options: Optional[Dict[str, Any]],
    reason: str,
    request_id: Optional[str] = None,
) -> LLMProviderResponse:
    model = (options or {}).get("model") or override_model or FALLBACK_PROVIDER
    if mode == "json":
        structure = payload.get("_output_structure") if isinstance(payload, dict) else None
        if isinstance(structure, dict) and structure:
            value: Any = _shape(structure, "")
        else:
            value = {"result": f"[mock-fallback] {role}/{task}: Sparklio Desk is unreachable"}
        output = LLMProviderOutput(type="json", value=value)
    else:
        output = LLMProviderOutput(
            type="text",
            value=f"[mock-fallback] {role}/{task}: Sparklio Desk is unreachable, no model was asked.",
        )
    return LLMProviderResponse(
        provider=FALLBACK_PROVIDER,
        model=str(model),
        usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        output=output,
        meta={
            "fallback": True,
            "fallback_reason": reason,
            "generator_mode": FALLBACK_PROVIDER,
            "role": role,
            "task": task,
            "mode": mode,
            "request_id": request_id,
            "latency_ms": 0.0,
        },
    )


def png_bytes(width: int, height: int, rgb: tuple = (200, 200, 200)) -> bytes:
    """A valid PNG of one colour (8-bit RGB, no dependency)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _int(value: Any, default: int, low: int, high: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return default
    return min(max(n, low), high)


def media_fallback(
    prompt: str,
    task: str,
    media_type: str,
    options: Optional[Dict[str, Any]],
    reason: str,
    request_id: Optional[str] = None,
) -> MediaProviderResponse:
    opts = options or {}
    width, height = _TASK_SIZES.get(task, (1024, 1024))
    width = _int(opts.get("width"), width, 8, 4096)
    height = _int(opts.get("height"), height, 8, 4096)
    count = _int(opts.get("count", opts.get("num_images", 1)), 1, 1, 4)
    data = base64.b64encode(png_bytes(width, height)).decode("ascii")
    outputs = [
        MediaProviderOutput(type="image", format="png", data=data, width=width, height=height)
        for _ in range(count)
    ]
    return MediaProviderResponse(
        provider=FALLBACK_PROVIDER,
        model=FALLBACK_PROVIDER,
        usage={"generation_time": 0.0, "images": count, "vram_used": 0},
        outputs=outputs,
        meta={
            "fallback": True,
            "fallback_reason": reason,
            "generator_mode": FALLBACK_PROVIDER,
            "prompt": prompt,
            "task": task,
            "media_type": media_type,
            "width": width,
            "height": height,
            "request_id": request_id,
        },
    )
