"""Live mode: the Desk calls the Ollama and ComfyUI doubles (`sparklio-testkit` processes), the
client calls the Desk (faults: test_live_faults.py)."""

from __future__ import annotations

import asyncio

import pytest
from checks import check_llm, check_media

from sparklio_desk import LLMGateway, MediaGateway, SyncLLMGateway


def test_text_through_ollama(live_desk, doubles):
    ollama, _ = doubles
    ollama.control_call("DELETE", "/requests")
    with SyncLLMGateway(base_url=live_desk.url) as gateway:
        resp = gateway.generate(
            role="copywriter",
            task="sns",
            payload={"product_name": "무선 이어폰", "target_audience": "2030 직장인"},
            mode="text",
        )
    check_llm(resp, role="copywriter", task="sns", mode="text", provider="ollama")
    assert resp.meta["generator_mode"] == "live"
    chats = [r for r in ollama.requests() if r["path"] == "/api/chat"]
    assert len(chats) == 1
    assert chats[0]["body"]["model"] == resp.model
    assert "무선 이어폰" in str(chats[0]["body"]["messages"])


def test_json_through_ollama(live_desk):
    async def run():
        async with LLMGateway(base_url=live_desk.url) as gateway:
            return await gateway.generate(
                "copywriter",
                "product_detail",
                {"product_name": "무선 이어폰", "features": ["노이즈캔슬링"]},
                mode="json",
                options={"temperature": 0.5},
            )

    resp = asyncio.run(run())
    check_llm(resp, role="copywriter", task="product_detail", mode="json", provider="ollama")
    assert resp.meta["temperature"] == pytest.approx(0.5)
    assert resp.usage["total_tokens"] > 0


def test_image_through_comfyui(live_desk, doubles):
    _, comfy = doubles
    comfy.control_call("DELETE", "/requests")

    async def run():
        async with MediaGateway(base_url=live_desk.url) as gateway:
            return await gateway.generate(
                prompt="무선 이어폰 product photo, white background",
                task="product_image",
                media_type="image",
                options={"width": 64, "height": 64, "seed": 7, "return": "base64"},
            )

    resp = asyncio.run(run())
    check_media(resp, provider="comfyui", base64_data=True, size=(64, 64))
    assert resp.meta["generator_mode"] == "live"
    assert resp.meta["seed"] == 7
    assert any(r["path"].endswith("/prompt") and r["method"] == "POST" for r in comfy.requests())
