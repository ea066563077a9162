"""Keys, against a Desk that trusts no network (as the Mac mini is seen over Tailscale).

Loopback is trusted by default (`server.trusted_networks`), so the Desk here is started with
`trusted_networks = []`: every gateway call then needs `Authorization: Bearer <key>`."""

from __future__ import annotations

import asyncio

import pytest
from checks import check_llm, check_media
from conftest import API_KEY, BACKEND_KEY

from sparklio_desk import (
    DeskAuthError,
    LLMGateway,
    SyncDeskClient,
    SyncLLMGateway,
    SyncMediaGateway,
)


def test_no_key_is_a_typed_401(keyed_desk):
    gateway = SyncLLMGateway(base_url=keyed_desk.url)
    with pytest.raises(DeskAuthError) as info:
        gateway.generate("copywriter", "sns", {"product_name": "x"}, mode="text")
    gateway.close()
    assert info.value.status == 401
    assert info.value.code == "UNAUTHORIZED"
    assert "Bearer" in info.value.message


def test_wrong_key_is_a_typed_401(keyed_desk):
    gateway = SyncMediaGateway(base_url=keyed_desk.url, api_key="not-the-key-0123456789abcdef")
    with pytest.raises(DeskAuthError) as info:
        gateway.generate("x", "product_image", options={"width": 64, "height": 64})
    gateway.close()
    assert info.value.status == 401
    assert "not valid" in info.value.message


def test_mock_fallback_never_hides_an_auth_error(keyed_desk):
    gateway = SyncLLMGateway(base_url=keyed_desk.url, mock_fallback=True)
    with pytest.raises(DeskAuthError):
        gateway.generate("copywriter", "sns", {"product_name": "x"}, mode="text")
    gateway.close()


def test_key_argument_opens_the_gateway(keyed_desk):
    async def run():
        async with LLMGateway(base_url=keyed_desk.url, api_key=API_KEY) as gateway:
            return await gateway.generate("copywriter", "product_detail", {"product_name": "텀블러"})

    check_llm(asyncio.run(run()), role="copywriter", task="product_detail", mode="json", provider="mock")


def test_key_from_environment(keyed_desk, monkeypatch):
    monkeypatch.setenv("SPARKLIO_DESK_URL", keyed_desk.url)
    monkeypatch.setenv("SPARKLIO_DESK_API_KEY", API_KEY)
    with SyncLLMGateway() as gateway:
        assert gateway.client.config.base_url == keyed_desk.url
        resp = gateway.generate("editor", "proofread", {"content": "좋읍니다"})
        health = gateway.health_check()
    check_llm(resp, role="editor", task="proofread", mode="json", provider="mock")
    assert health["mode"] == "mock"


def test_named_key_gets_base64_images(keyed_desk):
    # [[server.keys]] name = "backend", media_return = "base64": the designer agent's data
    # is the image itself without asking.
    with SyncMediaGateway(base_url=keyed_desk.url, api_key=BACKEND_KEY) as gateway:
        resp = gateway.generate("earbuds", "product_image", options={"width": 64, "height": 64})
    check_media(resp, provider="mock", base64_data=True, size=(64, 64))
    # The plain key keeps the Desk's default (URLs).
    with SyncMediaGateway(base_url=keyed_desk.url, api_key=API_KEY) as gateway:
        resp = gateway.generate("earbuds", "product_image", options={"width": 64, "height": 64})
    check_media(resp, provider="mock", base64_data=False, size=(64, 64))


def test_gateway_key_on_a_control_route_is_403(keyed_desk):
    with SyncDeskClient(base_url=keyed_desk.url, api_key=API_KEY) as client:
        with pytest.raises(DeskAuthError) as info:
            client.request("GET", "/api/v1/services")
    assert info.value.status == 403
    assert info.value.code == "FORBIDDEN"


def test_health_is_public(keyed_desk):
    with SyncDeskClient(base_url=keyed_desk.url) as client:
        assert client.health()["status"] in ("healthy", "degraded", "unhealthy")


def test_loopback_is_trusted_by_default_even_with_keys(tmp_path):
    """With the default trusted_networks (loopback), a Desk that has keys still answers a
    keyless call from 127.0.0.1: keys apply to the LAN / Tailscale side."""
    from conftest import _stop, start_desk

    desk = start_desk(
        tmp_path / "loopback-desk",
        f'[server]\nbind = "127.0.0.1:0"\napi_keys = ["{API_KEY}"]\n',
    )
    try:
        with SyncLLMGateway(base_url=desk.url) as gateway:
            resp = gateway.generate("copywriter", "sns", {"product_name": "x"}, mode="text")
    finally:
        _stop(desk.proc)
    check_llm(resp, role="copywriter", task="sns", mode="text", provider="mock")
