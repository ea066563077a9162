"""`LLMGateway` and `MediaGateway`: the team's in-process gateways' signatures, over HTTP.

    from sparklio_desk import get_gateway, get_media_gateway   # instead of app.services.llm / .media

    response = await get_gateway().generate(role="copywriter", task="product_detail",
                                            payload={...}, mode="json", options={...})
    response.output.value          # dict (json mode) or str (text mode)

`SyncLLMGateway` / `SyncMediaGateway` are the same, blocking.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from .client import DeskClient, SyncDeskClient
from .errors import DeskUnreachable
from .fallback import llm_fallback, media_fallback
from .models import LLMProviderResponse, MediaProviderResponse

__all__ = [
    "LLMGateway",
    "MediaGateway",
    "SyncLLMGateway",
    "SyncMediaGateway",
    "get_gateway",
    "get_media_gateway",
    "llm_request_body",
    "media_request_body",
]

LLM_GENERATE = "/api/v1/llm/generate"
LLM_HEALTH = "/api/v1/llm/health"
MEDIA_GENERATE = "/api/v1/media/generate"
MEDIA_HEALTH = "/api/v1/media/health"


def llm_request_body(
    role: str,
    task: str,
    payload: Dict[str, Any],
    mode: str,
    override_model: Optional[str],
    options: Optional[Dict[str, Any]],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"role": role, "task": task, "payload": payload, "mode": mode}
    if override_model is not None:
        body["override_model"] = override_model
    if options is not None:
        body["options"] = options
    return body


def media_request_body(
    prompt: str, task: str, media_type: str, options: Optional[Dict[str, Any]]
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"prompt": prompt, "task": task, "media_type": media_type}
    if options is not None:
        body["options"] = options
    return body


def _llm_parse(body: Dict[str, Any]) -> LLMProviderResponse:
    return LLMProviderResponse.from_desk(body)


def _media_parse(body: Dict[str, Any]) -> MediaProviderResponse:
    return MediaProviderResponse.from_desk(body)


class LLMGateway:
    """`await generate(role, task, payload, mode="json", override_model=None, options=None)`
    → `LLMProviderResponse`, answered by the Desk's LLM gateway.

    Pass a `DeskClient` to share one connection pool (and settings) with a `MediaGateway`, or
    the `DeskClient` keyword arguments (base_url, api_key, connect_timeout, timeouts,
    unreachable_ttl, mock_fallback, transport); anything left out comes from the environment.
    """

    def __init__(self, client: Optional[DeskClient] = None, **kwargs: Any) -> None:
        self.client = client or DeskClient(**kwargs)

    async def generate(
        self,
        role: str,
        task: str,
        payload: Dict[str, Any],
        mode: str = "json",
        override_model: Optional[str] = None,
        options: Optional[Dict[str, Any]] = None,
    ) -> LLMProviderResponse:
        body = llm_request_body(role, task, payload, mode, override_model, options)
        try:
            answer = await self.client.request(
                "POST", LLM_GENERATE, body, mode=mode, deadline_header=True
            )
        except DeskUnreachable as e:
            if not self.client.config.mock_fallback:
                raise
            return llm_fallback(
                role, task, payload, mode, override_model, options, str(e), e.request_id
            )
        return _llm_parse(answer)

    async def health_check(self) -> Dict[str, Any]:
        """`GET /api/v1/llm/health`: `{gateway, mode, paused, default_provider, providers}`."""
        return await self.client.request("GET", LLM_HEALTH)

    async def health(self) -> Dict[str, Any]:
        """`GET /health` of the Desk."""
        return await self.client.health()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class MediaGateway:
    """`await generate(prompt, task, media_type="image", options=None)` →
    `MediaProviderResponse`, answered by the Desk's media gateway (`POST /api/v1/media/generate`).

    `outputs[].data` is base64 when `options["return"] == "base64"`, or when the Desk's
    `media.default_return` (or the API key's `media_return`) says so; a URL otherwise.
    """

    def __init__(self, client: Optional[DeskClient] = None, **kwargs: Any) -> None:
        self.client = client or DeskClient(**kwargs)

    async def generate(
        self,
        prompt: str,
        task: str,
        media_type: str = "image",
        options: Optional[Dict[str, Any]] = None,
    ) -> MediaProviderResponse:
        body = media_request_body(prompt, task, media_type, options)
        try:
            answer = await self.client.request("POST", MEDIA_GENERATE, body, mode="image")
        except DeskUnreachable as e:
            if not self.client.config.mock_fallback or media_type != "image":
                raise
            return media_fallback(prompt, task, media_type, options, str(e), e.request_id)
        return _media_parse(answer)

    async def health_check(self) -> Dict[str, Any]:
        """`GET /api/v1/media/health`: `{gateway, mode, paused, active_provider, providers, jobs}`."""
        return await self.client.request("GET", MEDIA_HEALTH)

    async def health(self) -> Dict[str, Any]:
        return await self.client.health()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class SyncLLMGateway:
    """Blocking `LLMGateway`."""

    def __init__(self, client: Optional[SyncDeskClient] = None, **kwargs: Any) -> None:
        self.client = client or SyncDeskClient(**kwargs)

    def generate(
        self,
        role: str,
        task: str,
        payload: Dict[str, Any],
        mode: str = "json",
        override_model: Optional[str] = None,
        options: Optional[Dict[str, Any]] = None,
    ) -> LLMProviderResponse:
        body = llm_request_body(role, task, payload, mode, override_model, options)
        try:
            answer = self.client.request(
                "POST", LLM_GENERATE, body, mode=mode, deadline_header=True
            )
        except DeskUnreachable as e:
            if not self.client.config.mock_fallback:
                raise
            return llm_fallback(
                role, task, payload, mode, override_model, options, str(e), e.request_id
            )
        return _llm_parse(answer)

    def health_check(self) -> Dict[str, Any]:
        return self.client.request("GET", LLM_HEALTH)

    def health(self) -> Dict[str, Any]:
        return self.client.health()

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SyncMediaGateway:
    """Blocking `MediaGateway`."""

    def __init__(self, client: Optional[SyncDeskClient] = None, **kwargs: Any) -> None:
        self.client = client or SyncDeskClient(**kwargs)

    def generate(
        self,
        prompt: str,
        task: str,
        media_type: str = "image",
        options: Optional[Dict[str, Any]] = None,
    ) -> MediaProviderResponse:
        body = media_request_body(prompt, task, media_type, options)
        try:
            answer = self.client.request("POST", MEDIA_GENERATE, body, mode="image")
        except DeskUnreachable as e:
            if not self.client.config.mock_fallback or media_type != "image":
                raise
            return media_fallback(prompt, task, media_type, options, str(e), e.request_id)
        return _media_parse(answer)

    def health_check(self) -> Dict[str, Any]:
        return self.client.request("GET", MEDIA_HEALTH)

    def health(self) -> Dict[str, Any]:
        return self.client.health()

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_SINGLETONS: Dict[str, Any] = {}
_SINGLETON_LOCK = threading.Lock()


def _shared_client() -> DeskClient:
    with _SINGLETON_LOCK:
        client = _SINGLETONS.get("client")
        if client is None:
            client = _SINGLETONS["client"] = DeskClient()
        return client


def get_gateway() -> LLMGateway:
    """The process-wide `LLMGateway` (settings from the environment), like the backend's
    `app.services.llm.get_gateway`."""
    client = _shared_client()
    with _SINGLETON_LOCK:
        gateway = _SINGLETONS.get("llm")
        if gateway is None:
            gateway = _SINGLETONS["llm"] = LLMGateway(client)
        return gateway


def get_media_gateway() -> MediaGateway:
    """The process-wide `MediaGateway`, sharing `get_gateway()`'s connection pool, like the
    backend's `app.services.media.get_media_gateway`."""
    client = _shared_client()
    with _SINGLETON_LOCK:
        gateway = _SINGLETONS.get("media")
        if gateway is None:
            gateway = _SINGLETONS["media"] = MediaGateway(client)
        return gateway
