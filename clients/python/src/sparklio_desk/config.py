"""Where the Desk is, how to sign in, how long to wait: constructor arguments, else environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

__all__ = ["DeskConfig", "DEFAULT_URL", "DEFAULT_TIMEOUTS"]

DEFAULT_URL = "http://127.0.0.1:11500"

# Read timeouts per mode, in seconds. The Desk's own limits are 120 s for Ollama and 300 s for
# ComfyUI; the client waits that long for an answer (and tells the Desk, for LLM calls, to give
# up a little earlier so the caller gets a typed 504 instead of a cut connection).
DEFAULT_TIMEOUTS: Dict[str, float] = {
    "json": 120.0,
    "text": 120.0,
    "chat": 120.0,
    "image": 310.0,
    "health": 10.0,
}

_TRUE = {"1", "true", "yes", "on"}


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError as e:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from e


@dataclass
class DeskConfig:
    """Settings of a Desk client.

    base_url          SPARKLIO_DESK_URL, default http://127.0.0.1:11500
    api_key           SPARKLIO_DESK_API_KEY (sent as `Authorization: Bearer`); none on loopback
    connect_timeout   SPARKLIO_DESK_CONNECT_TIMEOUT, 2 s: how long a TCP connect may take
    timeouts          read timeouts per mode (json/text/chat, image, health);
                      SPARKLIO_DESK_LLM_TIMEOUT sets json/text/chat, SPARKLIO_DESK_MEDIA_TIMEOUT image
    unreachable_ttl   SPARKLIO_DESK_UNREACHABLE_TTL, 5 s: after a failed connect, calls fail at
                      once for this long instead of trying again (0 = always try)
    mock_fallback     SPARKLIO_DESK_MOCK_FALLBACK=1: answer a shaped mock (provider
                      "mock-fallback", meta.fallback = true) when the Desk is unreachable.
                      Off unless asked for: for tests and demos, never production.
    """

    base_url: str = DEFAULT_URL
    api_key: Optional[str] = None
    connect_timeout: float = 2.0
    timeouts: Dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    unreachable_ttl: float = 5.0
    mock_fallback: bool = False

    @classmethod
    def from_env(
        cls,
        *,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        connect_timeout: Optional[float] = None,
        timeouts: Optional[Mapping[str, float]] = None,
        unreachable_ttl: Optional[float] = None,
        mock_fallback: Optional[bool] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> "DeskConfig":
        """Arguments win; what is None comes from the environment, else the default."""
        env = os.environ if env is None else env
        merged = dict(DEFAULT_TIMEOUTS)
        llm = _env_float(env, "SPARKLIO_DESK_LLM_TIMEOUT", merged["json"])
        for mode in ("json", "text", "chat"):
            merged[mode] = llm
        merged["image"] = _env_float(env, "SPARKLIO_DESK_MEDIA_TIMEOUT", merged["image"])
        if timeouts:
            merged.update({k: float(v) for k, v in timeouts.items()})
        for mode, seconds in merged.items():
            if not seconds > 0:
                raise ValueError(f"timeout for {mode!r} must be positive, got {seconds}")
        if mock_fallback is None:
            mock_fallback = env.get("SPARKLIO_DESK_MOCK_FALLBACK", "").strip().lower() in _TRUE
        url = base_url or env.get("SPARKLIO_DESK_URL") or DEFAULT_URL
        key = api_key if api_key is not None else (env.get("SPARKLIO_DESK_API_KEY") or None)
        config = cls(
            base_url=url.rstrip("/"),
            api_key=key,
            connect_timeout=(
                connect_timeout
                if connect_timeout is not None
                else _env_float(env, "SPARKLIO_DESK_CONNECT_TIMEOUT", 2.0)
            ),
            timeouts=merged,
            unreachable_ttl=(
                unreachable_ttl
                if unreachable_ttl is not None
                else _env_float(env, "SPARKLIO_DESK_UNREACHABLE_TTL", 5.0)
            ),
            mock_fallback=bool(mock_fallback),
        )
        if not config.connect_timeout > 0:
            raise ValueError("connect_timeout must be positive")
        if config.unreachable_ttl < 0:
            raise ValueError("unreachable_ttl must not be negative")
        if not config.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {config.base_url!r}")
        return config

    def timeout_for(self, mode: str) -> float:
        """Read timeout for a mode; an unknown mode gets the json one (the Desk refuses it)."""
        return self.timeouts.get(mode, self.timeouts["json"])
