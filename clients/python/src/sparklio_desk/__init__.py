"""Python client of Sparklio Desk for the Sparklio backend.

`LLMGateway` / `MediaGateway` have the signatures and return models of the backend's in-process
gateways (`app.services.llm`, `app.services.media`), answered by the Desk over HTTP, with a
short connect timeout, per-mode read timeouts, typed errors, a remembered "Desk unreachable"
state and an opt-in mock fallback. See clients/python/README.md.
"""

from ._version import __version__
from .client import DeskClient, Reachability, SyncDeskClient, reachability_of
from .config import DEFAULT_TIMEOUTS, DEFAULT_URL, DeskConfig
from .errors import (
    DeskAuthError,
    DeskError,
    DeskNotFound,
    DeskOverloaded,
    DeskProtocolError,
    DeskTimeout,
    DeskUnreachable,
    DeskValidationError,
    ProviderError,
    ProviderUnavailable,
    SchemaMismatch,
    UpstreamError,
    error_from_response,
)
from .fallback import FALLBACK_PROVIDER
from .gateways import (
    LLMGateway,
    MediaGateway,
    SyncLLMGateway,
    SyncMediaGateway,
    get_gateway,
    get_media_gateway,
)
from .models import (
    LLMProviderOutput,
    LLMProviderResponse,
    MediaProviderOutput,
    MediaProviderResponse,
)

__all__ = [
    "__version__",
    "DeskClient",
    "SyncDeskClient",
    "Reachability",
    "reachability_of",
    "DeskConfig",
    "DEFAULT_URL",
    "DEFAULT_TIMEOUTS",
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
    "FALLBACK_PROVIDER",
    "LLMGateway",
    "MediaGateway",
    "SyncLLMGateway",
    "SyncMediaGateway",
    "get_gateway",
    "get_media_gateway",
    "LLMProviderOutput",
    "LLMProviderResponse",
    "MediaProviderOutput",
    "MediaProviderResponse",
]
