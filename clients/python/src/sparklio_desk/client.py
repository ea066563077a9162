"""The HTTP layer: one request to the Desk, its typed failure, and the "Desk unreachable" memory.

`DeskClient` (asyncio) and `SyncDeskClient` share everything but the send: `_Call` prepares a
request and turns the outcome (an answer or an httpx exception) into a dict or a `DeskError`.

The outage this fixes: with the desktop off, every backend call used to wait for a 60 s
timeout. Here a TCP connect may take `connect_timeout` (2 s), and a failed connect is remembered
per Desk URL for `unreachable_ttl` (5 s): calls in that window raise `DeskUnreachable` at once,
without touching the network, for the LLM and the media gateway alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Dict, Mapping, Optional, Tuple

import httpx

from ._version import __version__
from .config import DeskConfig
from .errors import (
    DeskError,
    DeskProtocolError,
    DeskTimeout,
    DeskUnreachable,
    error_from_response,
)

__all__ = ["DeskClient", "SyncDeskClient", "Reachability", "reachability_of"]


class Reachability:
    """What is known about one Desk URL: down until when, and counters for tests and metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_until = 0.0
        self.last_error: Optional[str] = None
        self.attempts = 0  # requests that went to the network
        self.skipped = 0  # requests refused from memory, without a connect

    def refuse(self, now: float) -> Optional[Tuple[float, Optional[str]]]:
        """(seconds left, the failure) while the Desk is remembered down, else None."""
        with self._lock:
            if now < self.down_until:
                self.skipped += 1
                return self.down_until - now, self.last_error
            self.attempts += 1
            return None

    def mark_down(self, now: float, ttl: float, error: str) -> None:
        with self._lock:
            self.down_until = now + ttl
            self.last_error = error

    def mark_up(self) -> None:
        with self._lock:
            self.down_until = 0.0
            self.last_error = None

    def forget(self) -> None:
        """Try the network again on the next call."""
        self.mark_up()


_REGISTRY: Dict[str, Reachability] = {}
_REGISTRY_LOCK = threading.Lock()


def reachability_of(base_url: str) -> Reachability:
    """The shared state of a Desk URL (every client of that URL in this process uses it)."""
    key = base_url.rstrip("/")
    with _REGISTRY_LOCK:
        state = _REGISTRY.get(key)
        if state is None:
            state = _REGISTRY[key] = Reachability()
        return state


# A caller's own deadline sent to the Desk for LLM calls (`x-request-timeout`): a little under
# the client's read timeout, so the Desk gives up first and says so with a typed 504.
def _desk_deadline(read_timeout: float) -> float:
    return max(0.1, read_timeout - min(1.0, read_timeout * 0.2))


class _Call:
    """One request: prepared once, finished from whichever client sent it."""

    def __init__(
        self,
        config: DeskConfig,
        state: Reachability,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]],
        mode: str,
        deadline_header: bool,
        request_id: Optional[str],
    ) -> None:
        self.config = config
        self.state = state
        self.method = method
        self.url = config.base_url + path
        self.body = body
        self.read_timeout = config.timeout_for(mode)
        self.request_id = request_id or uuid.uuid4().hex
        self.headers = {
            "accept": "application/json",
            "user-agent": f"sparklio-desk-client/{__version__}",
            "x-request-id": self.request_id,
        }
        if config.api_key:
            self.headers["authorization"] = f"Bearer {config.api_key}"
        if deadline_header:
            self.headers["x-request-timeout"] = f"{_desk_deadline(self.read_timeout):.3f}"
        self.timeout = httpx.Timeout(
            self.read_timeout, connect=config.connect_timeout, pool=config.connect_timeout
        )

    def remembered_failure(self) -> Optional[DeskUnreachable]:
        refused = self.state.refuse(time.monotonic())
        if refused is None:
            return None
        left, why = refused
        return DeskUnreachable(
            f"Sparklio Desk at {self.config.base_url} was unreachable moments ago ({why}); "
            f"not trying again for {left:.1f} s",
            url=self.config.base_url,
            remembered=True,
            retry_after=left,
            request_id=self.request_id,
        )

    def failure(self, exc: Exception) -> DeskError:
        base = self.config.base_url
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            what = (
                f"no connection within {self.config.connect_timeout:g} s"
                if isinstance(exc, httpx.ConnectTimeout)
                else (str(exc) or type(exc).__name__)
            )
            self.state.mark_down(time.monotonic(), self.config.unreachable_ttl, what)
            return DeskUnreachable(
                f"Sparklio Desk at {base} is unreachable: {what} "
                f"(is the desktop on and `sparklio-desk serve` running?)",
                url=base,
                request_id=self.request_id,
            )
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return DeskTimeout(
                f"Sparklio Desk at {base} gave no answer within {self.read_timeout:g} s",
                code="CLIENT_TIMEOUT",
                request_id=self.request_id,
            )
        return DeskProtocolError(
            f"the connection to Sparklio Desk at {base} failed mid-request: "
            f"{type(exc).__name__}: {exc}",
            code="CONNECTION_LOST",
            request_id=self.request_id,
        )

    def finish(self, response: httpx.Response) -> Dict[str, Any]:
        # Any answer proves the Desk is there.
        self.state.mark_up()
        request_id = response.headers.get("x-request-id") or self.request_id
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise error_from_response(response.status_code, body, response.headers, request_id)
        if not isinstance(body, dict):
            raise DeskProtocolError(
                f"HTTP {response.status_code} from {self.url} is not a JSON object: {str(body)[:300]}",
                code="BAD_RESPONSE",
                status=response.status_code,
                request_id=request_id,
            )
        return body


class _Base:
    def __init__(
        self,
        config: Optional[DeskConfig] = None,
        *,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        connect_timeout: Optional[float] = None,
        timeouts: Optional[Mapping[str, float]] = None,
        unreachable_ttl: Optional[float] = None,
        mock_fallback: Optional[bool] = None,
        transport: Any = None,
    ) -> None:
        self.config = config or DeskConfig.from_env(
            base_url=base_url,
            api_key=api_key,
            connect_timeout=connect_timeout,
            timeouts=timeouts,
            unreachable_ttl=unreachable_ttl,
            mock_fallback=mock_fallback,
        )
        self.reachability = reachability_of(self.config.base_url)
        self._transport = transport

    def _call(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]],
        mode: str,
        deadline_header: bool,
        request_id: Optional[str],
    ) -> _Call:
        return _Call(
            self.config, self.reachability, method, path, body, mode, deadline_header, request_id
        )


class DeskClient(_Base):
    """asyncio client of one Desk. Safe to share; works across event loops (a new connection
    pool is made for each loop it is used from)."""

    def __init__(self, config: Optional[DeskConfig] = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._http: Optional[httpx.AsyncClient] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.is_closed:
            self._http = httpx.AsyncClient(transport=self._transport, trust_env=False)
            self._loop = loop
        return self._http

    async def request(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        *,
        mode: str = "health",
        deadline_header: bool = False,
        request_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        call = self._call(method, path, body, mode, deadline_header, request_id)
        remembered = call.remembered_failure()
        if remembered is not None:
            raise remembered
        try:
            response = await self._client().request(
                method, call.url, json=body, headers=call.headers, timeout=call.timeout
            )
        except httpx.TransportError as e:
            raise call.failure(e) from e
        return call.finish(response)

    async def health(self) -> Dict[str, Any]:
        """`GET /health`: liveness and the overall level (`status`: healthy/degraded/unhealthy)."""
        return await self.request("GET", "/health")

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None

    async def __aenter__(self) -> "DeskClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class SyncDeskClient(_Base):
    """Blocking client of one Desk (scripts, Celery tasks, tests)."""

    def __init__(self, config: Optional[DeskConfig] = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._http = httpx.Client(transport=self._transport, trust_env=False)

    def request(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        *,
        mode: str = "health",
        deadline_header: bool = False,
        request_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        call = self._call(method, path, body, mode, deadline_header, request_id)
        remembered = call.remembered_failure()
        if remembered is not None:
            raise remembered
        try:
            response = self._http.request(
                method, call.url, json=body, headers=call.headers, timeout=call.timeout
            )
        except httpx.TransportError as e:
            raise call.failure(e) from e
        return call.finish(response)

    def health(self) -> Dict[str, Any]:
        """`GET /health`: liveness and the overall level (`status`: healthy/degraded/unhealthy)."""
        return self.request("GET", "/health")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SyncDeskClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
