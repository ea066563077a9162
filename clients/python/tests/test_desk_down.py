"""The Desk down: the outage the client exists to fix.

Nothing listening (refused), a desktop that does not answer at all (SYNs dropped: a listening
socket whose accept queue is full), a Desk that accepts and then says nothing. Calls fail fast
and typed, a failed connect is remembered so the next calls do not touch the network, and the
mock fallback answers only when asked for."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time

import httpx
import pytest
from checks import png_size
from conftest import _stop, free_port, start_desk

from sparklio_desk import (
    DeskTimeout,
    DeskUnreachable,
    LLMGateway,
    MediaGateway,
    SyncDeskClient,
    SyncLLMGateway,
    SyncMediaGateway,
    reachability_of,
)


class CountingTransport(httpx.BaseTransport):
    """The real network transport, counting the requests that reach it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.count = 0

    def handle_request(self, request):
        self.count += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncCountingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.count = 0

    async def handle_async_request(self, request):
        self.count += 1
        return await self.inner.handle_async_request(request)


TEXT = dict(role="copywriter", task="sns", payload={"product_name": "무선 이어폰"}, mode="text")


def test_refused_is_unreachable_fast_and_remembered():
    url = f"http://127.0.0.1:{free_port()}"
    transport = CountingTransport()
    gateway = SyncLLMGateway(base_url=url, transport=transport, unreachable_ttl=5.0)

    start = time.monotonic()
    with pytest.raises(DeskUnreachable) as first:
        gateway.generate(**TEXT)
    first_elapsed = time.monotonic() - start
    assert first.value.remembered is False
    assert first.value.code == "DESK_UNREACHABLE" and first.value.status is None
    assert first.value.url == url
    assert isinstance(first.value, ConnectionError)
    assert transport.count == 1
    assert first_elapsed < 1.0, first_elapsed

    start = time.monotonic()
    with pytest.raises(DeskUnreachable) as second:
        gateway.generate(**TEXT)
    second_elapsed = time.monotonic() - start
    assert second.value.remembered is True
    assert 0 < second.value.retry_after <= 5.0
    assert transport.count == 1, "the remembered failure must not try to connect"
    assert gateway.client.reachability.skipped >= 1
    assert second_elapsed < 0.05, second_elapsed
    gateway.close()


def _blackhole():
    """A port whose SYNs go unanswered, like a desktop that is off: a listening socket with a
    full accept queue (Linux drops further SYNs, so connects hang until their timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    time.sleep(0.1)
    return port, [server, *fillers]


def test_silent_desktop_costs_one_connect_timeout_then_milliseconds():
    port, sockets = _blackhole()
    try:
        url = f"http://127.0.0.1:{port}"
        transport = AsyncCountingTransport()
        llm = LLMGateway(base_url=url, connect_timeout=0.5, transport=transport)
        media = MediaGateway(llm.client)

        async def run():
            timings = []
            for gateway, call in (
                (llm, lambda: llm.generate(**TEXT)),
                (llm, lambda: llm.generate(**TEXT)),
                (media, lambda: media.generate("x", "product_image")),
            ):
                start = time.monotonic()
                with pytest.raises(DeskUnreachable) as info:
                    await call()
                timings.append((time.monotonic() - start, info.value))
            return timings

        (t1, e1), (t2, e2), (t3, e3) = asyncio.run(run())
    finally:
        for s in sockets:
            s.close()
    # The first call waits for the connect timeout, not the 120 s read timeout.
    assert 0.4 < t1 < 2.0, t1
    assert "no connection within 0.5 s" in e1.message and not e1.remembered
    # Then both gateways fail from memory, without a connect.
    assert e2.remembered and e3.remembered
    assert t2 < 0.05 and t3 < 0.05, (t2, t3)
    assert transport.count == 1


def test_tries_again_after_the_window_and_recovers(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    transport = CountingTransport()
    client = SyncDeskClient(base_url=url, unreachable_ttl=0.5, transport=transport)
    with pytest.raises(DeskUnreachable):
        client.health()
    desk = start_desk(tmp_path / "late-desk", f'[server]\nbind = "127.0.0.1:{port}"\n')
    try:
        # Up now, but still inside the remembered window: no attempt.
        with pytest.raises(DeskUnreachable) as info:
            client.health()
        assert info.value.remembered
        assert transport.count == 1
        # Bounded wait for the window to pass, then it is tried and answers.
        deadline = time.monotonic() + 5.0
        answer = None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = client.health()
            except DeskUnreachable as e:
                assert e.remembered
                time.sleep(0.1)
        assert answer is not None and answer["status"] in ("healthy", "degraded", "unhealthy")
        assert transport.count == 2
        assert client.reachability.down_until == 0.0
    finally:
        client.close()
        _stop(desk.proc)


def test_forget_retries_at_once():
    url = f"http://127.0.0.1:{free_port()}"
    transport = CountingTransport()
    with SyncDeskClient(base_url=url, transport=transport) as client:
        for _ in range(2):
            with pytest.raises(DeskUnreachable):
                client.health()
        assert transport.count == 1
        reachability_of(url).forget()
        with pytest.raises(DeskUnreachable) as info:
            client.health()
        assert not info.value.remembered
        assert transport.count == 2


def test_zero_ttl_never_remembers():
    url = f"http://127.0.0.1:{free_port()}"
    transport = CountingTransport()
    with SyncDeskClient(base_url=url, transport=transport, unreachable_ttl=0) as client:
        for _ in range(3):
            with pytest.raises(DeskUnreachable) as info:
                client.health()
            assert not info.value.remembered
    assert transport.count == 3


def test_hung_desk_is_a_client_timeout_not_unreachable():
    """Accepts, reads, never answers (a Desk stuck in the middle of something)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        gateway = SyncLLMGateway(base_url=f"http://127.0.0.1:{port}", timeouts={"text": 0.5})
        start = time.monotonic()
        with pytest.raises(DeskTimeout) as info:
            gateway.generate(**TEXT)
        elapsed = time.monotonic() - start
        assert info.value.code == "CLIENT_TIMEOUT"
        assert info.value.status is None
        assert 0.4 < elapsed < 2.0, elapsed
        # The Desk was reached: the next call goes to the network again.
        assert gateway.client.reachability.down_until == 0.0
        gateway.close()
    finally:
        stop.set()
        thread.join(timeout=5)
        for c in held:
            c.close()
        server.close()


def test_no_fallback_unless_asked():
    gateway = SyncLLMGateway(base_url=f"http://127.0.0.1:{free_port()}")
    assert gateway.client.config.mock_fallback is False
    with pytest.raises(DeskUnreachable):
        gateway.generate(**TEXT)
    gateway.close()


def test_mock_fallback_flag_answers_shaped_and_marked(agent_tasks):
    url = f"http://127.0.0.1:{free_port()}"
    spec = agent_tasks["task_instructions"]["strategist"]["brand_kit"]
    payload = dict(agent_tasks["payloads"]["strategist"])
    payload["_instructions"] = spec["instruction"]
    payload["_output_structure"] = spec["structure"]

    async def run():
        async with LLMGateway(base_url=url, mock_fallback=True) as llm:
            first = await llm.generate("strategist", "brand_kit", payload, mode="json")
            second = await llm.generate(**TEXT)  # from memory: still answered
            return first, second, llm.client.reachability.skipped

    first, second, skipped = asyncio.run(run())
    assert first.provider == "mock-fallback" and second.provider == "mock-fallback"
    assert first.meta["fallback"] is True and second.meta["fallback"] is True
    assert "unreachable" in first.meta["fallback_reason"]
    assert skipped >= 1
    # The agent's structure, nested objects included, is the shape of the answer.
    assert first.output.type == "json"
    assert set(first.output.value) == set(spec["structure"])
    for key, sub in spec["structure"].items():
        if isinstance(sub, dict):
            assert set(first.output.value[key]) == set(sub)
    assert first.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert second.output.type == "text" and isinstance(second.output.value, str)


def test_mock_fallback_from_environment_draws_an_image(monkeypatch):
    monkeypatch.setenv("SPARKLIO_DESK_MOCK_FALLBACK", "1")
    monkeypatch.setenv("SPARKLIO_DESK_URL", f"http://127.0.0.1:{free_port()}")
    with SyncMediaGateway() as media:
        assert media.client.config.mock_fallback is True
        resp = media.generate("earbuds", "sns_thumbnail", options={"count": 2})
        with pytest.raises(DeskUnreachable):
            media.generate("a jingle", "sns_thumbnail", media_type="audio")  # nothing to fake
    assert resp.provider == "mock-fallback" and resp.meta["fallback"] is True
    assert len(resp.outputs) == 2
    for out in resp.outputs:
        assert (out.type, out.format, out.width, out.height) == ("image", "png", 1200, 630)
        assert png_size(base64.b64decode(out.data, validate=True)) == (1200, 630)
