"""Typed errors from the Desk's standard error body.

Every failure the Desk answers looks like
``{"error": {"code", "message", "request_id", ...}, "detail": {...}}``; `error_from_response`
turns it into one of the classes below (by `code` first, then by HTTP status). Failures that
never reach an answer (nothing listening, the connection or the answer timing out) are raised
by the client as `DeskUnreachable` / `DeskTimeout` / `DeskProtocolError`.

`ProviderError` has the attributes of the team's own `ProviderError` (`message`, `provider`,
`status_code`, `details`), so `except ProviderError as e: e.message` keeps working when the
backend imports it from here; every Desk error is one.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "ProviderError",
    "DeskError",
    "DeskValidationError",
    "DeskAuthError",
    "DeskNotFound",
    "DeskOverloaded",
    "ProviderUnavailable",
    "SchemaMismatch",
    "UpstreamError",
    "DeskTimeout",
    "DeskUnreachable",
    "DeskProtocolError",
    "error_from_response",
]


class ProviderError(Exception):
    """Same attributes as the backend's `ProviderError`."""

    def __init__(
        self,
        message: str,
        provider: str,
        status_code: Optional[int] = None,
        details: Optional[Dict[str, Any]] = None,
    ):
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.details = details or {}
        super().__init__(self.message)


class DeskError(ProviderError):
    """A failure of a call to Sparklio Desk.

    code        the Desk's error code (`VALIDATION_ERROR`, `PROVIDER_UNAVAILABLE`, ...) or the
                client's own (`DESK_UNREACHABLE`, `CLIENT_TIMEOUT`, `BAD_RESPONSE`)
    status      the HTTP status, None when no answer came
    message     the Desk's message
    request_id  the request id (the Desk's, else the one the client sent)
    retry_after seconds to wait before trying again, when the Desk said so
    body        the whole error body (empty when no answer came)
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        retry_after: Optional[float] = None,
        body: Optional[Dict[str, Any]] = None,
    ):
        error = (body or {}).get("error")
        details = dict(error) if isinstance(error, dict) else {}
        super().__init__(message, provider or "sparklio-desk", status, details)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.model = model
        self.retry_after = retry_after
        self.body = body or {}

    @property
    def field(self) -> Optional[str]:
        """The request field a validation error names (`error.field`)."""
        return self.details.get("field")

    def __str__(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.code}{status}: {self.message}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class DeskValidationError(DeskError, ValueError):
    """400 (and 413/415): the request was refused as it is; `field` names the culprit."""


class DeskAuthError(DeskError):
    """401/403 (and 421 HOST_NOT_ALLOWED): missing or wrong key, or not allowed here."""


class DeskNotFound(DeskError):
    """404: an unknown route or id, or a model the provider does not have (MODEL_NOT_FOUND)."""


class DeskOverloaded(DeskError):
    """429 RATE_LIMITED / 503 OVERLOADED: come back after `retry_after` seconds."""


class ProviderUnavailable(DeskError):
    """503: the Desk is up but Ollama/ComfyUI is not (PROVIDER_UNAVAILABLE), or the Desk's
    gateway is paused or shutting down."""


class SchemaMismatch(DeskError):
    """502 LLM_SCHEMA_MISMATCH / LLM_INVALID_JSON: the model's answer broke the shape even
    after a repair round; `violations` and `raw` say how."""

    @property
    def violations(self) -> list:
        return list(self.details.get("violations") or [])

    @property
    def raw(self) -> Optional[str]:
        return self.details.get("raw")


class UpstreamError(DeskError):
    """Other provider failures: 502 PROVIDER_ERROR / GENERATION_FAILED / JOB_LOST,
    422 WORKFLOW_INVALID, 409 JOB_CANCELLED."""


class DeskTimeout(DeskError, TimeoutError):
    """504 LLM_TIMEOUT / MEDIA_TIMEOUT from the Desk, or CLIENT_TIMEOUT when no answer came
    within the client's read timeout."""


class DeskUnreachable(DeskError, ConnectionError):
    """Nothing answered at the Desk's address (refused, DNS, connect timeout).

    `remembered` is True when the call was not even tried because the Desk was found
    unreachable less than `unreachable_ttl` seconds ago; `retry_after` is the time left.
    """

    def __init__(self, message: str, *, url: str, remembered: bool = False, **kw: Any):
        kw.setdefault("code", "DESK_UNREACHABLE")
        super().__init__(message, **kw)
        self.url = url
        self.remembered = remembered


class DeskProtocolError(DeskError):
    """The connection broke mid-answer, or the answer was not what the Desk sends."""


_BY_CODE: Dict[str, Type[DeskError]] = {
    "VALIDATION_ERROR": DeskValidationError,
    "UNSUPPORTED_MEDIA_TYPE": DeskValidationError,
    "PAYLOAD_TOO_LARGE": DeskValidationError,
    "UNAUTHORIZED": DeskAuthError,
    "FORBIDDEN": DeskAuthError,
    "CROSS_SITE_REFUSED": DeskAuthError,
    "HOST_NOT_ALLOWED": DeskAuthError,
    "NOT_FOUND": DeskNotFound,
    "MODEL_NOT_FOUND": DeskNotFound,
    "RATE_LIMITED": DeskOverloaded,
    "OVERLOADED": DeskOverloaded,
    "PROVIDER_UNAVAILABLE": ProviderUnavailable,
    "GATEWAY_PAUSED": ProviderUnavailable,
    "SERVICE_UNAVAILABLE": ProviderUnavailable,
    "SHUTTING_DOWN": ProviderUnavailable,
    "LLM_SCHEMA_MISMATCH": SchemaMismatch,
    "LLM_INVALID_JSON": SchemaMismatch,
    "PROVIDER_ERROR": UpstreamError,
    "GENERATION_FAILED": UpstreamError,
    "JOB_LOST": UpstreamError,
    "WORKFLOW_INVALID": UpstreamError,
    "JOB_CANCELLED": UpstreamError,
    "LLM_TIMEOUT": DeskTimeout,
    "MEDIA_TIMEOUT": DeskTimeout,
    "TIMEOUT": DeskTimeout,
    "REQUEST_TIMEOUT": DeskTimeout,
}


def _class_for_status(status: int) -> Type[DeskError]:
    if status in (400, 413, 415, 422):
        return DeskValidationError if status != 422 else UpstreamError
    if status in (401, 403, 421):
        return DeskAuthError
    if status == 404:
        return DeskNotFound
    if status == 429:
        return DeskOverloaded
    if status == 503:
        return ProviderUnavailable
    if status == 504:
        return DeskTimeout
    if status == 502:
        return UpstreamError
    return DeskError


def _retry_after(headers: Any, error: Dict[str, Any]) -> Optional[float]:
    value = None
    if headers is not None:
        value = headers.get("retry-after")
    if value is None:
        value = error.get("retry_after_s")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def error_from_response(
    status: int,
    body: Any,
    headers: Any = None,
    request_id: Optional[str] = None,
) -> DeskError:
    """The typed error for a non-2xx answer (`body` is the parsed JSON, or anything else)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = body if isinstance(body, str) else repr(body)
        return DeskProtocolError(
            f"HTTP {status} without the standard error body: {text[:300]}",
            code="BAD_RESPONSE",
            status=status,
            request_id=request_id,
            body=body if isinstance(body, dict) else None,
        )
    code = str(error.get("code") or f"HTTP_{status}")
    cls = _BY_CODE.get(code) or _class_for_status(status)
    return cls(
        str(error.get("message") or code),
        code=code,
        status=status,
        request_id=error.get("request_id") or request_id,
        provider=error.get("provider"),
        model=error.get("model"),
        retry_after=_retry_after(headers, error),
        body=body,
    )
