"""Faults in the doubles, switched on through their control API while the Desk runs live: the
client gets a typed error fast (well under every configured timeout), never a hang. Its own
module, so the Desk's breakers tripped here do not touch the happy-path tests."""

from __future__ import annotations

import time

import pytest

from sparklio_desk import DeskTimeout, ProviderUnavailable, SyncLLMGateway, SyncMediaGateway

TEXT = dict(role="copywriter", task="sns", payload={"product_name": "무선 이어폰"}, mode="text")


def test_ollama_hang_gives_a_typed_504_within_the_client_deadline(live_desk, doubles):
    ollama, _ = doubles
    ollama.fault("hang_after_accept")
    try:
        # The Desk would wait 120 s for Ollama; the client's 5 s text timeout travels as
        # x-request-timeout (4 s), so the Desk gives up first and says why.
        with SyncLLMGateway(base_url=live_desk.url, timeouts={"text": 5.0}) as gateway:
            start = time.monotonic()
            with pytest.raises(DeskTimeout) as info:
                gateway.generate(**TEXT)
            elapsed = time.monotonic() - start
    finally:
        ollama.heal()
    assert info.value.code == "LLM_TIMEOUT"
    assert info.value.status == 504
    assert info.value.provider == "ollama"
    assert 3.5 < elapsed < 5.0, elapsed  # the Desk's answer, before the client's own cut-off


def test_ollama_refusing_gives_fast_provider_unavailable(live_desk, doubles):
    ollama, _ = doubles
    ollama.fault("refuse")
    try:
        with SyncLLMGateway(base_url=live_desk.url, timeouts={"text": 30.0}) as gateway:
            for _ in range(3):  # also once the Desk's breaker has opened
                start = time.monotonic()
                with pytest.raises(ProviderUnavailable) as info:
                    gateway.generate(**TEXT)
                elapsed = time.monotonic() - start
                assert info.value.code == "PROVIDER_UNAVAILABLE"
                assert info.value.status == 503
                assert info.value.provider == "ollama"
                assert elapsed < 1.0, elapsed
            # The Desk answered each time: the client does not mark the Desk itself down.
            assert gateway.client.reachability.down_until == 0.0
    finally:
        ollama.heal()


def test_comfyui_hang_gives_fast_provider_unavailable(live_desk, doubles):
    _, comfy = doubles
    comfy.fault("hang_after_accept")
    try:
        with SyncMediaGateway(base_url=live_desk.url, timeouts={"image": 60.0}) as gateway:
            start = time.monotonic()
            with pytest.raises(ProviderUnavailable) as info:
                gateway.generate("x", "product_image", options={"width": 64, "height": 64})
            elapsed = time.monotonic() - start
    finally:
        comfy.heal()
    assert info.value.provider == "comfyui"
    assert info.value.details.get("timed_out") is True
    # ComfyUI's own limit is 300 s and the client's 60 s: the Desk's 3 s probe decides.
    assert elapsed < 10.0, elapsed


def test_comfyui_refusing_gives_fast_provider_unavailable(live_desk, doubles):
    _, comfy = doubles
    comfy.fault("refuse")
    try:
        with SyncMediaGateway(base_url=live_desk.url) as gateway:
            for _ in range(3):
                start = time.monotonic()
                with pytest.raises(ProviderUnavailable) as info:
                    gateway.generate("x", "product_image", options={"width": 64, "height": 64})
                assert time.monotonic() - start < 1.0
                assert info.value.provider == "comfyui"
    finally:
        comfy.heal()
