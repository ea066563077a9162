"""The official `ollama` and `openai` Python packages (pinned in requirements-ci.txt) pointed
at the Desk's Ollama front (`/api`, `/ollama/api`) and OpenAI front (`/v1`), in front of the
Ollama and ComfyUI doubles: what a LAN tool (Open WebUI, LangChain, the team's scripts) sees.
Every call asserts content, not just a status."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import ollama
import openai
import pytest

from conftest import _stop, free_port, start_desk

GATEWAY = "sdk-gateway-key-0123456789abcdef"
ADMIN = "sdk-admin-key-0123456789abcdefgh"


@pytest.fixture(scope="module")
def sdk_desk(tmp_path_factory, doubles):
    """Live mode in front of the doubles; nothing trusted, so every call needs a key; one
    OpenAI alias."""
    ollama_double, comfy = doubles
    config = f"""
generator_mode = "live"

[server]
bind = "127.0.0.1:0"
trusted_networks = []
api_keys = ["{GATEWAY}"]
admin_keys = ["{ADMIN}"]

[llm.providers.ollama]
base_url = "{ollama_double.url}"

[media.providers.comfyui]
base_url = "{comfy.url}"

[fronts.openai.models]
"gpt-4o-mini" = {{ provider = "ollama", model = "qwen2.5:7b" }}
"""
    desk = start_desk(tmp_path_factory.mktemp("sdk-desk"), config)
    yield desk
    _stop(desk.proc)


def ollama_client(desk, key=GATEWAY, prefix=""):
    return ollama.Client(host=desk.url + prefix, headers={"Authorization": f"Bearer {key}"})


def openai_client(desk, key=GATEWAY):
    return openai.OpenAI(base_url=desk.url + "/v1", api_key=key, max_retries=0, timeout=20)


# ---- ollama -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/ollama"])
def test_ollama_list_ps_show(sdk_desk, prefix):
    client = ollama_client(sdk_desk, prefix=prefix)
    names = [m.model for m in client.list().models]
    assert "qwen2.5:7b" in names and "qwen2.5:14b" in names, names
    loaded = [m.model for m in client.ps().models]
    assert "qwen2.5:7b" in loaded, loaded
    shown = client.show("qwen2.5:7b")
    assert shown.details is not None and shown.details.family, shown


@pytest.mark.parametrize("prefix", ["", "/ollama"])
def test_ollama_chat_generate_embed(sdk_desk, prefix):
    client = ollama_client(sdk_desk, prefix=prefix)
    reply = client.chat(model="qwen2.5:7b", messages=[{"role": "user", "content": "루미 이어폰"}])
    assert "루미 이어폰" in reply.message.content
    assert reply.done and reply.eval_count and reply.eval_count > 0

    pieces = list(
        client.chat(
            model="qwen2.5:7b", messages=[{"role": "user", "content": "스트림 확인"}], stream=True
        )
    )
    assert len(pieces) >= 2
    assert "스트림 확인" in "".join(p.message.content for p in pieces)
    assert pieces[-1].done and pieces[-1].prompt_eval_count

    generated = client.generate(model="qwen2.5:7b", prompt="한 줄 소개")
    assert "한 줄 소개" in generated.response

    embedded = client.embed(model="qwen2.5:7b", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) > 0


def test_ollama_pull_needs_an_admin_key_and_reports_progress(sdk_desk):
    with pytest.raises(ollama.ResponseError) as refused:
        ollama_client(sdk_desk).pull("llama3.2:1b")
    assert refused.value.status_code == 403
    assert "admin" in str(refused.value)

    progress = list(ollama_client(sdk_desk, key=ADMIN).pull("llama3.2:1b", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[-1] == "success", statuses
    assert any(p.completed and p.total and p.completed <= p.total for p in progress), statuses
    assert "llama3.2:1b" in [m.model for m in ollama_client(sdk_desk).list().models]


def test_ollama_without_a_key_and_with_an_unknown_model(sdk_desk):
    with pytest.raises(ollama.ResponseError) as no_key:
        ollama.Client(host=sdk_desk.url).list()
    assert no_key.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as missing:
        ollama_client(sdk_desk).chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert missing.value.status_code == 404
    assert "not found" in str(missing.value)


# ---- openai -------------------------------------------------------------------------------


def test_openai_models_chat_and_stream(sdk_desk):
    client = openai_client(sdk_desk)
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "qwen2.5:7b" in ids, ids

    done = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "짧게"}, {"role": "user", "content": "루미 소개"}],
    )
    assert done.object == "chat.completion"
    assert "루미 소개" in done.choices[0].message.content
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="qwen2.5:7b",
            messages=[{"role": "user", "content": "스트림 확인"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "스트림 확인" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_openai_json_schema_and_completions(sdk_desk):
    client = openai_client(sdk_desk)
    schema = {
        "type": "object",
        "properties": {"headline": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["headline", "score"],
    }
    done = client.chat.completions.create(
        model="qwen2.5:7b",
        messages=[{"role": "user", "content": "헤드라인"}],
        response_format={"type": "json_schema", "json_schema": {"name": "h", "schema": schema}},
    )
    answer = json.loads(done.choices[0].message.content)
    assert set(answer) == {"headline", "score"} and isinstance(answer["score"], int), answer

    legacy = client.completions.create(model="qwen2.5:7b", prompt="옛 방식")
    assert "옛 방식" in legacy.choices[0].text


def test_openai_embeddings_default_base64_and_float(sdk_desk):
    client = openai_client(sdk_desk)
    # The SDK asks for base64 by default and decodes it itself.
    e = client.embeddings.create(model="qwen2.5:7b", input=["하나", "둘"])
    assert [d.index for d in e.data] == [0, 1]
    assert len(e.data[0].embedding) > 0 and all(isinstance(x, float) for x in e.data[0].embedding)
    f = client.embeddings.create(model="qwen2.5:7b", input="하나", encoding_format="float")
    assert f.data[0].embedding == pytest.approx(e.data[0].embedding, rel=1e-6)


def test_openai_images_url_and_b64(sdk_desk):
    client = openai_client(sdk_desk)
    b64 = client.images.generate(prompt="루미 이어폰 제품 사진", size="512x512", response_format="b64_json")
    png = base64.b64decode(b64.data[0].b64_json)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    url = client.images.generate(prompt="루미 이어폰 제품 사진", size="512x512")
    with urllib.request.urlopen(url.data[0].url, timeout=10) as r:
        assert r.read(8) == b"\x89PNG\r\n\x1a\n"


def test_openai_errors_in_openais_shape(sdk_desk):
    with pytest.raises(openai.AuthenticationError):
        openai_client(sdk_desk, key="wrong-key").models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client(sdk_desk).chat.completions.create(
            model="nope:1b", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.status_code == 404
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client(sdk_desk).chat.completions.create(model="qwen2.5:7b", messages=[])
    assert bad.value.body["param"] == "messages"


def test_every_front_fails_fast_when_ollama_is_down(tmp_path_factory):
    port = free_port()
    desk = start_desk(
        tmp_path_factory.mktemp("down-desk"),
        f'generator_mode = "live"\n[server]\nbind = "127.0.0.1:0"\n'
        f'[llm.providers.ollama]\nbase_url = "http://127.0.0.1:{port}"\ntimeout_s = 60\n',
    )
    try:
        started = time.monotonic()
        with pytest.raises(ollama.ResponseError) as down:
            ollama.Client(host=desk.url).chat(
                model="qwen2.5:7b", messages=[{"role": "user", "content": "x"}]
            )
        assert down.value.status_code == 503
        with pytest.raises(openai.InternalServerError) as down_openai:
            openai.OpenAI(base_url=desk.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
                model="qwen2.5:7b", messages=[{"role": "user", "content": "x"}]
            )
        assert down_openai.value.status_code == 503
        assert time.monotonic() - started < 5, "a 60 s timeout must not be waited for"
        # With the SDK's defaults (two retries, each waiting out Retry-After, an open
        # breaker's time), a down provider still reaches the caller at once: the front's
        # 5xx say x-should-retry: false. It took 5-20 s a call, growing with the breaker.
        default_client = openai.OpenAI(base_url=desk.url + "/v1", api_key="x")
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(openai.InternalServerError) as down_default:
                default_client.chat.completions.create(
                    model="qwen2.5:7b", messages=[{"role": "user", "content": "x"}]
                )
            assert down_default.value.response.headers.get("x-should-retry") == "false"
            assert time.monotonic() - started < 1.5, "the SDK retried a down provider"
    finally:
        _stop(desk.proc)


def test_errors_mid_answer_are_raised_by_the_clients_with_the_desks_message(sdk_desk, doubles):
    """An upstream cut mid-line: the `ollama` client raises ResponseError with the Desk's
    message (a line glued to the cut one gave a JSONDecodeError); an instance's own 400 is
    the OpenAI SDK's BadRequestError (it was a 502 InternalServerError, sent three times)."""
    ollama_double, _ = doubles
    client = ollama_client(sdk_desk)
    ollama_double.fault("reset_mid_stream", path="/api/chat")
    try:
        for stream in (True, False):
            with pytest.raises(ollama.ResponseError) as cut:
                answer = client.chat(
                    model="qwen2.5:7b", messages=[{"role": "user", "content": "x"}], stream=stream
                )
                if stream:
                    list(answer)
            assert "dropped" in str(cut.value), cut.value
    finally:
        ollama_double.heal()
    ollama_double.fault("status", status=400, path="/api/chat")
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            openai.OpenAI(base_url=sdk_desk.url + "/v1", api_key=GATEWAY).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        assert refused.value.status_code == 400
        assert refused.value.body["type"] == "invalid_request_error", refused.value.body
    finally:
        ollama_double.heal()
    ollama_double.fault("status", status=400, path="/api/embed")
    try:
        with pytest.raises(openai.BadRequestError):
            openai.OpenAI(base_url=sdk_desk.url + "/v1", api_key=GATEWAY).embeddings.create(
                model="gpt-4o-mini", input=["x"]
            )
    finally:
        ollama_double.heal()


def test_openai_tools_called_and_answered(sdk_desk):
    client = openai_client(sdk_desk)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_stock",
                "description": "Stock of a product",
                "parameters": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}},
                    "required": ["sku"],
                },
            },
        }
    ]
    asked = [{"role": "user", "content": "루미 재고?"}]
    first = client.chat.completions.create(model="qwen2.5:7b", messages=asked, tools=tools)
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_stock"
    assert "sku" in json.loads(call.function.arguments)

    # Streamed, the SDK's chunks carry the same call.
    chunks = list(
        client.chat.completions.create(model="qwen2.5:7b", messages=asked, tools=tools, stream=True)
    )
    streamed = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert streamed and streamed[0].function.name == "get_stock"
    assert any(c.choices and c.choices[0].finish_reason == "tool_calls" for c in chunks)

    answer = client.chat.completions.create(
        model="qwen2.5:7b",
        tools=tools,
        messages=asked
        + [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "재고 42개"},
        ],
    )
    assert answer.choices[0].finish_reason == "stop"
    assert "재고 42개" in answer.choices[0].message.content


def test_ollama_sdk_against_the_desk_in_mock_mode(mock_desk):
    """The outage case: no model runs, the backend points OLLAMA_BASE_URL at the Desk in mock
    mode and still gets Ollama-shaped answers at once."""
    client = ollama.Client(host=mock_desk.url)
    names = [m.model for m in client.list().models]
    assert "qwen2.5:7b" in names and "qwen2.5:14b" in names, names
    assert client.ps().models == []
    started = time.monotonic()
    reply = client.chat(model="qwen2.5:14b", messages=[{"role": "user", "content": "루미 이어폰 소개"}])
    assert reply.done and reply.message.role == "assistant" and reply.message.content
    assert reply.eval_count and reply.eval_count > 0
    pieces = list(client.chat(model="qwen2.5:7b", messages=[{"role": "user", "content": "짧게"}], stream=True))
    assert pieces[-1].done and "".join(p.message.content for p in pieces)
    generated = client.generate(model="qwen2.5:7b", prompt="한 줄", format="json")
    assert isinstance(json.loads(generated.response), dict)
    embedded = client.embed(model="qwen2.5:7b", input=["a", "a", "b"])
    assert embedded.embeddings[0] == embedded.embeddings[1] != embedded.embeddings[2]
    assert client.show("qwen2.5:7b").details.family == "sparklio-mock"
    assert time.monotonic() - started < 5


def test_structured_output_in_mock_mode_follows_the_callers_schema(mock_desk):
    """Mock mode is what the backend's tests run in: an answer to `format=<schema>` or
    `response_format=<pydantic model>` parses into the caller's type (it had a fixed shape)."""
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int
        tags: list[str]

    reply = ollama.Client(host=mock_desk.url).chat(
        model="qwen2.5:7b",
        messages=[{"role": "user", "content": "Kim, 30"}],
        format=Person.model_json_schema(),
    )
    person = Person.model_validate_json(reply.message.content)
    assert person.name and isinstance(person.age, int)
    parsed = (
        openai.OpenAI(base_url=mock_desk.url + "/v1", api_key="x", max_retries=0)
        .chat.completions.parse(
            model="qwen2.5:7b",
            messages=[{"role": "user", "content": "Kim, 30"}],
            response_format=Person,
        )
        .choices[0]
        .message.parsed
    )
    assert isinstance(parsed, Person) and parsed.name
