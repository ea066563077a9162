"""Pure unit parts, no server: what goes on the wire, error mapping, settings, model parity."""

from __future__ import annotations

import asyncio
import json
import typing
from datetime import datetime

import httpx
import pytest

import sparklio_desk
from sparklio_desk import (
    DeskAuthError,
    DeskConfig,
    DeskError,
    DeskNotFound,
    DeskOverloaded,
    DeskProtocolError,
    DeskTimeout,
    DeskValidationError,
    LLMGateway,
    LLMProviderOutput,
    LLMProviderResponse,
    MediaProviderOutput,
    MediaProviderResponse,
    ProviderError,
    ProviderUnavailable,
    SchemaMismatch,
    SyncLLMGateway,
    SyncMediaGateway,
    UpstreamError,
    error_from_response,
)

LLM_ANSWER = {
    "provider": "ollama",
    "model": "qwen2.5:7b",
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    "output": {"type": "json", "value": {"a": 1}, "content": '{"a": 1}', "parsed": {"a": 1}},
    "meta": {"role": "copywriter", "task": "sns", "mode": "json", "request_id": "r1"},
    "timestamp": "2026-11-29T23:18:00.711Z",
}


def capture(answer=LLM_ANSWER, status=200, headers=None):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=answer, headers=headers)

    return seen, httpx.MockTransport(handler)


def test_llm_request_on_the_wire():
    seen, transport = capture()
    gateway = SyncLLMGateway(
        base_url="http://desk.test:11500/",
        api_key="k-0123456789abcdef",
        transport=transport,
        timeouts={"json": 10.0},
    )
    resp = gateway.generate(
        "copywriter", "sns", {"product_name": "x"}, override_model="llama3.2", options={"tone": "t"}
    )
    (req,) = seen
    assert req.method == "POST"
    assert str(req.url) == "http://desk.test:11500/api/v1/llm/generate"
    assert req.headers["authorization"] == "Bearer k-0123456789abcdef"
    assert req.headers["x-request-id"]
    # The Desk is told to give up before the client does.
    assert float(req.headers["x-request-timeout"]) == pytest.approx(9.0)
    assert json.loads(req.content) == {
        "role": "copywriter",
        "task": "sns",
        "payload": {"product_name": "x"},
        "mode": "json",
        "override_model": "llama3.2",
        "options": {"tone": "t"},
    }
    assert resp.output.value == {"a": 1}
    assert resp.timestamp == datetime(2026, 11, 29, 23, 18, 0, 711000)
    assert resp.raw["output"]["content"] == '{"a": 1}'


def test_media_request_on_the_wire_async():
    answer = {
        "provider": "comfyui",
        "model": "sdxl_txt2img",
        "usage": {"generation_time": 1.5, "images": 1},
        "outputs": [
            {"type": "image", "format": "png", "data": "aGk=", "encoding": "base64",
             "url": "http://x/y", "width": 8, "height": 8, "duration": None}
        ],
        "meta": {"seed": 1},
        "timestamp": "2026-11-29T23:18:00Z",
        "job_id": "job_1",
    }
    seen = []

    async def handler(request):
        seen.append(request)
        return httpx.Response(200, json=answer)

    async def run():
        async with sparklio_desk.MediaGateway(
            base_url="http://desk.test", transport=httpx.MockTransport(handler)
        ) as gateway:
            return await gateway.generate("p", "product_image", options={"return": "base64"})

    resp = asyncio.run(run())
    (req,) = seen
    assert req.url.path == "/api/v1/media/generate"
    assert "authorization" not in req.headers
    assert "x-request-timeout" not in req.headers  # media: the Desk's own job limit applies
    assert json.loads(req.content) == {
        "prompt": "p", "task": "product_image", "media_type": "image", "options": {"return": "base64"}
    }
    assert resp.outputs[0].data == "aGk=" and resp.usage["generation_time"] == 1.5
    assert resp.raw["job_id"] == "job_1"


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (400, "VALIDATION_ERROR", DeskValidationError),
        (400, "UNSUPPORTED_MEDIA_TYPE", DeskValidationError),
        (413, "PAYLOAD_TOO_LARGE", DeskValidationError),
        (401, "UNAUTHORIZED", DeskAuthError),
        (403, "FORBIDDEN", DeskAuthError),
        (403, "CROSS_SITE_REFUSED", DeskAuthError),
        (421, "HOST_NOT_ALLOWED", DeskAuthError),
        (404, "NOT_FOUND", DeskNotFound),
        (404, "MODEL_NOT_FOUND", DeskNotFound),
        (429, "RATE_LIMITED", DeskOverloaded),
        (503, "OVERLOADED", DeskOverloaded),
        (503, "PROVIDER_UNAVAILABLE", ProviderUnavailable),
        (503, "GATEWAY_PAUSED", ProviderUnavailable),
        (502, "LLM_SCHEMA_MISMATCH", SchemaMismatch),
        (502, "LLM_INVALID_JSON", SchemaMismatch),
        (502, "PROVIDER_ERROR", UpstreamError),
        (502, "GENERATION_FAILED", UpstreamError),
        (422, "WORKFLOW_INVALID", UpstreamError),
        (409, "JOB_CANCELLED", UpstreamError),
        (504, "LLM_TIMEOUT", DeskTimeout),
        (504, "MEDIA_TIMEOUT", DeskTimeout),
        (500, "INTERNAL", DeskError),
        (503, "SOMETHING_NEW", ProviderUnavailable),  # unknown code: by status
        (418, "SOMETHING_ELSE", DeskError),
    ],
)
def test_error_mapping(status, code, cls):
    body = {
        "error": {"code": code, "message": "m", "request_id": "rid", "provider": "ollama",
                  "model": "qwen2.5:7b", "field": "mode"},
        "detail": {"error": code.lower(), "message": "m", "provider": "ollama"},
    }
    err = error_from_response(status, body)
    assert type(err) is cls
    assert (err.code, err.status, err.message, err.request_id) == (code, status, "m", "rid")
    assert (err.provider, err.model, err.field) == ("ollama", "qwen2.5:7b", "mode")
    # The team's ProviderError attributes.
    assert isinstance(err, ProviderError)
    assert err.status_code == status and err.details["code"] == code


def test_retry_after_from_header_and_body():
    body = {"error": {"code": "OVERLOADED", "message": "busy", "retry_after_s": 3}}
    assert error_from_response(503, body).retry_after == 3.0
    assert error_from_response(503, body, httpx.Headers({"retry-after": "7"})).retry_after == 7.0


def test_schema_mismatch_carries_violations():
    body = {"error": {"code": "LLM_SCHEMA_MISMATCH", "message": "m",
                      "violations": ["/post: missing"], "raw": "{}"}}
    err = error_from_response(502, body)
    assert err.violations == ["/post: missing"] and err.raw == "{}"


def test_non_standard_error_body_is_a_protocol_error():
    transport = httpx.MockTransport(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    gateway = SyncLLMGateway(base_url="http://desk.test", transport=transport)
    with pytest.raises(DeskProtocolError) as info:
        gateway.generate("a", "b", {})
    assert info.value.status == 502 and info.value.code == "BAD_RESPONSE"
    assert "bad gateway" in info.value.message


def test_success_that_is_not_an_object_is_a_protocol_error():
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=[1, 2]))
    with SyncMediaGateway(base_url="http://desk.test", transport=transport) as gateway:
        with pytest.raises(DeskProtocolError):
            gateway.generate("p", "t")


def test_connection_lost_mid_answer():
    def handler(request):
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    gateway = SyncLLMGateway(base_url="http://desk.test", transport=httpx.MockTransport(handler))
    with pytest.raises(DeskProtocolError) as info:
        gateway.generate("a", "b", {})
    assert info.value.code == "CONNECTION_LOST"
    # Not a connect failure: the Desk is not remembered as down.
    assert gateway.client.reachability.down_until == 0.0


def test_config_from_environment():
    env = {
        "SPARKLIO_DESK_URL": "http://100.120.180.42:11500/",
        "SPARKLIO_DESK_API_KEY": "key-from-env",
        "SPARKLIO_DESK_CONNECT_TIMEOUT": "1.5",
        "SPARKLIO_DESK_UNREACHABLE_TTL": "10",
        "SPARKLIO_DESK_LLM_TIMEOUT": "60",
        "SPARKLIO_DESK_MEDIA_TIMEOUT": "200",
        "SPARKLIO_DESK_MOCK_FALLBACK": "true",
    }
    c = DeskConfig.from_env(env=env)
    assert c.base_url == "http://100.120.180.42:11500"
    assert c.api_key == "key-from-env"
    assert (c.connect_timeout, c.unreachable_ttl, c.mock_fallback) == (1.5, 10.0, True)
    assert c.timeout_for("json") == c.timeout_for("text") == c.timeout_for("chat") == 60.0
    assert c.timeout_for("image") == 200.0
    assert c.timeout_for("tools") == 60.0  # unknown mode: the json timeout (the Desk refuses it)
    # Arguments win over the environment.
    c = DeskConfig.from_env(env=env, api_key="arg", mock_fallback=False, timeouts={"text": 5})
    assert (c.api_key, c.mock_fallback, c.timeout_for("text"), c.timeout_for("json")) == (
        "arg", False, 5.0, 60.0)


def test_config_defaults():
    c = DeskConfig.from_env(env={})
    assert c.base_url == "http://127.0.0.1:11500"
    assert c.api_key is None and c.mock_fallback is False
    assert (c.connect_timeout, c.unreachable_ttl) == (2.0, 5.0)
    assert c.timeout_for("json") == 120.0 and c.timeout_for("image") == 310.0


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SPARKLIO_DESK_CONNECT_TIMEOUT": "soon"}, "SPARKLIO_DESK_CONNECT_TIMEOUT"),
        ({"SPARKLIO_DESK_URL": "desk:11500"}, "http://"),
        ({"SPARKLIO_DESK_LLM_TIMEOUT": "0"}, "positive"),
    ],
)
def test_config_refuses_nonsense(env, message):
    with pytest.raises(ValueError, match=message):
        DeskConfig.from_env(env=env)


# The team's models (backend/app/services/{llm,media}/providers/base.py at e899b3b), field by
# field: name -> (annotation, required).
TEAM_FIELDS = {
    LLMProviderOutput: {
        "type": (typing.Literal["text", "json"], True),
        "value": (typing.Union[str, typing.Dict[str, typing.Any]], True),
    },
    LLMProviderResponse: {
        "provider": (str, True),
        "model": (str, True),
        "usage": (typing.Dict[str, int], False),
        "output": (LLMProviderOutput, True),
        "meta": (typing.Dict[str, typing.Any], False),
        "timestamp": (datetime, False),
    },
    MediaProviderOutput: {
        "type": (typing.Literal["image", "video", "audio"], True),
        "format": (str, True),
        "data": (str, True),
        "width": (typing.Optional[int], False),
        "height": (typing.Optional[int], False),
        "duration": (typing.Optional[float], False),
    },
    MediaProviderResponse: {
        "provider": (str, True),
        "model": (str, True),
        "usage": (typing.Dict[str, typing.Any], False),
        "outputs": (typing.List[MediaProviderOutput], True),
        "meta": (typing.Dict[str, typing.Any], False),
        "timestamp": (datetime, False),
    },
}


@pytest.mark.parametrize("model", list(TEAM_FIELDS), ids=lambda m: m.__name__)
def test_models_match_the_teams_field_for_field(model):
    fields = model.model_fields
    assert list(fields) == list(TEAM_FIELDS[model])
    for name, (annotation, required) in TEAM_FIELDS[model].items():
        assert fields[name].annotation == annotation, name
        assert fields[name].is_required() == required, name


def test_models_default_like_the_teams():
    r = LLMProviderResponse(provider="p", model="m", output={"type": "text", "value": "v"})
    assert r.usage == {} and r.meta == {} and r.raw == {}
    assert r.timestamp.tzinfo is None
    assert abs((datetime.utcnow() - r.timestamp).total_seconds()) < 5
    with pytest.raises(Exception):
        LLMProviderOutput(type="image", value="x")


def test_singletons_share_one_client(monkeypatch):
    from sparklio_desk import gateways

    monkeypatch.setattr(gateways, "_SINGLETONS", {})
    assert sparklio_desk.get_gateway() is sparklio_desk.get_gateway()
    assert sparklio_desk.get_gateway().client is sparklio_desk.get_media_gateway().client


def test_async_gateway_over_mock_transport():
    seen, transport = capture()

    async def run():
        async with LLMGateway(base_url="http://desk.test", transport=transport) as gateway:
            return await gateway.generate("copywriter", "sns", {"x": 1}, mode="text")

    resp = asyncio.run(run())
    assert resp.provider == "ollama"
    assert json.loads(seen[0].content)["mode"] == "text"
