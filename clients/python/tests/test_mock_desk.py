"""Against a real Desk in mock mode: every agent's request as the agents send it, images in both
return forms, health, and typed errors for bad input."""

from __future__ import annotations

import asyncio

import pytest
from checks import check_llm, check_media

from sparklio_desk import (
    DeskClient,
    DeskValidationError,
    LLMGateway,
    MediaGateway,
    SyncDeskClient,
    SyncLLMGateway,
    SyncMediaGateway,
)


def agent_payload(agent_tasks: dict, agent: str, task: str) -> tuple:
    """The payload and options exactly as the agent's `_enhance_payload` builds them."""
    spec = agent_tasks["task_instructions"][agent][task]
    payload = dict(agent_tasks["payloads"][agent])
    payload["_instructions"] = spec["instruction"]
    payload["_output_structure"] = spec["structure"]
    options = agent_tasks["options"].get(agent)
    if options:
        # CopywriterAgent adds these from request.options.
        payload["_tone_guide"] = agent_tasks["tone_guide"][options["tone"]]
        payload["_length"] = options["length"]
    return payload, options


def all_agent_pairs():
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "fixtures" / "agent_tasks.json").read_text("utf-8"))
    return [(a, t) for a, tasks in data["task_instructions"].items() for t in tasks]


def test_fixture_holds_all_25_agent_tasks():
    pairs = all_agent_pairs()
    assert len(pairs) == 25
    assert {a for a, _ in pairs} == {"copywriter", "strategist", "reviewer", "optimizer", "editor"}


@pytest.mark.parametrize("agent,task", all_agent_pairs())
def test_every_agent_task_as_the_agents_send_it(mock_desk, agent_tasks, agent, task):
    payload, options = agent_payload(agent_tasks, agent, task)

    async def run():
        gateway = LLMGateway(base_url=mock_desk.url)
        try:
            # The agents' call: role=self.name, task, payload=enhanced, mode="json", options.
            return await gateway.generate(
                role=agent, task=task, payload=payload, mode="json", options=options
            )
        finally:
            await gateway.aclose()

    resp = asyncio.run(run())
    check_llm(resp, role=agent, task=task, mode="json", provider="mock")
    assert resp.meta["role"] == agent
    assert resp.meta["generator_mode"] == "mock"
    # The answer has the agent's own fields (nested ones too): the contract its request
    # carries, which is also what a live answer is held to.
    assert resp.meta["contract"] == "request_structure"

    def has_keys(structure, value, at):
        for key, sub in structure.items():
            assert key in value and value[key] is not None, f"{at}/{key}: {value}"
            if isinstance(sub, dict):
                has_keys(sub, value[key], f"{at}/{key}")

    has_keys(payload["_output_structure"], resp.output.value, f"{agent}/{task}")
    if options:
        # The team's sampling default for the copywriter reaches the Desk's answer.
        assert resp.meta["temperature"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "role,task,mode",
    [
        ("copywriter", "product_detail", "json"),
        ("copywriter", "sns", "text"),
        ("strategist", "brand_kit", "json"),
        ("reviewer", "content_review", "chat"),
        ("brand_agent", "brand_summary", "json"),  # an alias the backend's flow uses
        ("prompt_engineer", "enhance_image_prompt", "text"),  # DesignerAgent's prompt upgrade
    ],
)
def test_roles_tasks_and_modes_sync(mock_desk, role, task, mode):
    with SyncLLMGateway(base_url=mock_desk.url) as gateway:
        resp = gateway.generate(
            role=role,
            task=task,
            payload={"product_name": "무선 이어폰", "features": ["노이즈캔슬링"]},
            mode=mode,
            options={"temperature": 0.7},
        )
    check_llm(resp, role=role, task=task, mode=mode, provider="mock")
    assert resp.meta["temperature"] == pytest.approx(0.7)
    if mode == "json":
        assert resp.raw["output"]["parsed"] == resp.output.value


def test_override_model_is_the_model_answered(mock_desk):
    gateway = SyncLLMGateway(base_url=mock_desk.url)
    resp = gateway.generate(
        "copywriter", "product_detail", {"product_name": "텀블러"}, override_model="llama3.2"
    )
    gateway.close()
    assert resp.model == "llama3.2"


def test_health_helpers(mock_desk):
    async def run():
        client = DeskClient(base_url=mock_desk.url)
        llm, media = LLMGateway(client), MediaGateway(client)
        try:
            return await client.health(), await llm.health_check(), await media.health_check()
        finally:
            await client.aclose()

    desk, llm, media = asyncio.run(run())
    assert desk["status"] in ("healthy", "degraded", "unhealthy")
    assert desk["version"]
    assert llm["mode"] == "mock" and llm["gateway"] == "healthy"
    assert llm["providers"]["mock"]["status"] == "healthy"
    assert media["mode"] == "mock"
    assert media["providers"]["comfyui"]["available"] is False  # nothing at :8188 here


def test_media_base64_on_request_as_designer_sends_it(mock_desk):
    # DesignerAgent._build_media_options for brand_logo, plus the return form it needs.
    options = {"width": 512, "height": 512, "steps": 30, "cfg_scale": 7.0, "return": "base64"}

    async def run():
        gateway = MediaGateway(base_url=mock_desk.url)
        try:
            return await gateway.generate(
                prompt="EcoTech logo design, leaf, minimal style, simple, memorable",
                task="brand_logo",
                media_type="image",
                options=options,
            )
        finally:
            await gateway.aclose()

    resp = asyncio.run(run())
    (png,) = check_media(resp, provider="mock", base64_data=True, size=(512, 512))
    assert len(png) > 100
    assert resp.meta["task"] == "brand_logo"
    assert resp.meta["steps"] == 30


def test_media_url_by_default(mock_desk):
    gateway = SyncMediaGateway(base_url=mock_desk.url)
    resp = gateway.generate("earbuds on white", "product_image", options={"width": 64, "height": 64})
    check_media(resp, provider="mock", base64_data=False, size=(64, 64))
    # The URL opens without a key (signed) and is the same PNG size.
    r = gateway.client._http.get(resp.outputs[0].data)
    gateway.close()
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    from checks import png_size

    assert png_size(r.content) == (64, 64)


def test_media_base64_from_desk_config(base64_desk):
    # media.default_return = "base64": no options.return needed (the designer agent sends none).
    gateway = SyncMediaGateway(base_url=base64_desk.url)
    resp = gateway.generate(
        "earbuds", "product_image", options={"width": 64, "height": 48, "count": 2}
    )
    gateway.close()
    check_media(resp, provider="mock", base64_data=True, size=(64, 48), count=2)


def test_unknown_mode_is_a_typed_400(mock_desk):
    gateway = SyncLLMGateway(base_url=mock_desk.url)
    with pytest.raises(DeskValidationError) as info:
        gateway.generate("copywriter", "sns", {"product_name": "x"}, mode="tools")
    gateway.close()
    err = info.value
    assert err.status == 400 and err.status_code == 400
    assert err.code == "VALIDATION_ERROR"
    assert err.field == "mode"
    assert "mode" in err.message
    assert err.request_id
    assert isinstance(err, ValueError)


def test_bad_option_names_its_field(mock_desk):
    async def run():
        gateway = LLMGateway(base_url=mock_desk.url)
        try:
            await gateway.generate("copywriter", "sns", {"p": 1}, options={"temperature": 9})
        finally:
            await gateway.aclose()

    with pytest.raises(DeskValidationError) as info:
        asyncio.run(run())
    assert info.value.field == "options.temperature"


def test_unsupported_media_type_is_a_typed_400(mock_desk):
    gateway = SyncMediaGateway(base_url=mock_desk.url)
    with pytest.raises(DeskValidationError) as info:
        gateway.generate("a jingle", "sns_thumbnail", media_type="audio")
    gateway.close()
    assert info.value.code == "UNSUPPORTED_MEDIA_TYPE"
    assert info.value.status == 400


def test_image_too_large_is_a_typed_400(mock_desk):
    gateway = SyncMediaGateway(base_url=mock_desk.url)
    with pytest.raises(DeskValidationError) as info:
        gateway.generate("x", "product_image", options={"width": 100000, "height": 64})
    gateway.close()
    assert info.value.code == "VALIDATION_ERROR"
    assert "width" in (info.value.field or info.value.message)


def test_one_client_across_event_loops(mock_desk):
    # FastAPI runs one loop, but scripts and tests call asyncio.run repeatedly.
    gateway = LLMGateway(base_url=mock_desk.url)
    for _ in range(2):
        resp = asyncio.run(gateway.generate("copywriter", "sns", {"product_name": "x"}, mode="text"))
        assert resp.output.type == "text"


def test_sync_client_health(mock_desk):
    with SyncDeskClient(base_url=mock_desk.url) as client:
        assert client.health()["status"] in ("healthy", "degraded", "unhealthy")
