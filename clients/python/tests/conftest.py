"""Real processes for the client's tests: the Desk (`sparklio-desk serve`) and the Ollama /
ComfyUI doubles (`sparklio-testkit`), all on 127.0.0.1 with ports the OS picks.

Binaries: $SPARKLIO_DESK_BIN / $SPARKLIO_TESTKIT_BIN, else $CARGO_TARGET_DIR/debug/…, else
<repo>/target/debug/….
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXE = ".exe" if os.name == "nt" else ""

# Variables the Desk or the client read that must not leak in from the shell running pytest.
_LEAKY = (
    "GENERATOR_MODE",
    "OLLAMA_BASE_URL",
    "OLLAMA_DEFAULT_MODEL",
    "OLLAMA_TIMEOUT",
    "COMFYUI_BASE_URL",
    "COMFYUI_WORKFLOW_DIR",
    "COMFYUI_TIMEOUT",
    "SPARKLIO_DESK_CONFIG",
    "SPARKLIO_DESK_BIND",
    "SPARKLIO_DESK_API_KEYS",
    "SPARKLIO_DESK_ADMIN_KEYS",
    "SPARKLIO_DESK_DATA_DIR",
    "SPARKLIO_DESK_URL",
    "SPARKLIO_DESK_API_KEY",
    "SPARKLIO_DESK_MOCK_FALLBACK",
    "SPARKLIO_DESK_CONNECT_TIMEOUT",
    "SPARKLIO_DESK_UNREACHABLE_TTL",
    "SPARKLIO_DESK_LLM_TIMEOUT",
    "SPARKLIO_DESK_MEDIA_TIMEOUT",
)


def binary(name: str, env_var: str) -> Path:
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit)
    else:
        target = os.environ.get("CARGO_TARGET_DIR")
        base = Path(target) if target else REPO / "target"
        path = base / "debug" / f"{name}{EXE}"
    if not path.is_file():
        pytest.fail(
            f"{name} not found at {path}: build it (cargo build -p {name} --bins) or set {env_var}",
            pytrace=False,
        )
    return path


def clean_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update(extra or {})
    return env


@pytest.fixture(autouse=True)
def _isolated_client(monkeypatch):
    """Clients in tests get their settings from arguments, never from the caller's shell, and
    no test inherits another's "Desk unreachable" memory (ports get reused)."""
    from sparklio_desk import client

    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)
    client._REGISTRY.clear()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Desk:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_desk(workdir: Path, config: str, *, args=(), ready_timeout: float = 30.0) -> Desk:
    """`sparklio-desk serve` with `config` (TOML) on 127.0.0.1:0; returns once /healthz answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "sparklio-desk.toml"
    cfg.write_text(config, encoding="utf-8")
    log = workdir / "desk.log"
    out = open(log, "wb")
    proc = subprocess.Popen(
        [
            str(binary("sparklio-desk", "SPARKLIO_DESK_BIN")),
            "serve",
            "--config",
            str(cfg),
            "--data-dir",
            str(workdir / "data"),
            "--log-format",
            "json",
            *args,
        ],
        cwd=workdir,  # no stray .env
        env=clean_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    out.close()
    deadline = time.monotonic() + ready_timeout
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sparklio-desk exited ({proc.returncode}):\n{log.read_text()}")
        if url is None:
            for line in log.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if str(entry.get("message", "")).startswith("Sparklio Desk is serving"):
                    url = f"http://{entry['addr']}"
                    break
        if url is not None:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return Desk(url, proc, log)
            except OSError:
                pass
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError(f"sparklio-desk did not become ready in {ready_timeout} s:\n{log.read_text()}")


@dataclass
class Double:
    kind: str
    url: str
    control: str
    proc: subprocess.Popen

    def control_call(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.control + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
        return json.loads(raw) if raw else {}

    def fault(self, fault: str, **kw) -> dict:
        return self.control_call("PUT", "/fault", {"fault": fault, **kw})

    def heal(self) -> dict:
        return self.control_call("DELETE", "/fault")

    def requests(self) -> list:
        got = self.control_call("GET", "/requests")
        return got if isinstance(got, list) else got.get("requests", [])


def start_double(kind: str, *args: str, ready_timeout: float = 20.0) -> Double:
    """`sparklio-testkit <kind> --port 0`; reads its one "listening on … control …" line."""
    proc = subprocess.Popen(
        [str(binary("sparklio-testkit", "SPARKLIO_TESTKIT_BIN")), kind, "--port", "0", *args],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    ready, _, _ = select.select([proc.stdout], [], [], ready_timeout)
    line = proc.stdout.readline().decode(errors="replace").split() if ready else []
    # Nothing else is read from the pipe: keep it drained so the double can never block on it.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    # listening on 127.0.0.1:<port> control 127.0.0.1:<control-port>
    if len(line) != 5 or line[:2] != ["listening", "on"] or line[3] != "control":
        _stop(proc)
        raise RuntimeError(f"sparklio-testkit {kind} did not start: {line!r}")
    return Double(kind, f"http://{line[2]}", f"http://{line[4]}", proc)


def free_port() -> int:
    """A port nothing listens on (bound and released: connects to it are refused)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def agent_tasks() -> dict:
    return json.loads((FIXTURES / "agent_tasks.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mock_desk(tmp_path_factory):
    """The Desk in mock mode with its built-in defaults (loopback trusted, no keys)."""
    desk = start_desk(tmp_path_factory.mktemp("mock-desk"), '[server]\nbind = "127.0.0.1:0"\n')
    yield desk
    _stop(desk.proc)


@pytest.fixture(scope="module")
def base64_desk(tmp_path_factory):
    """Mock mode with `media.default_return = "base64"`."""
    desk = start_desk(
        tmp_path_factory.mktemp("base64-desk"),
        '[server]\nbind = "127.0.0.1:0"\n\n[media]\ndefault_return = "base64"\n',
    )
    yield desk
    _stop(desk.proc)


API_KEY = "test-gateway-key-0123456789abcdef"
BACKEND_KEY = "test-backend-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_desk(tmp_path_factory):
    """Mock mode where nothing is trusted: every gateway call needs a key. `api_keys` holds a
    plain key; the named key "backend" also asks for base64 images (`media_return`)."""
    config = f"""
[server]
bind = "127.0.0.1:0"
trusted_networks = []
api_keys = ["{API_KEY}"]

[[server.keys]]
name = "backend"
key = "{BACKEND_KEY}"
media_return = "base64"
"""
    desk = start_desk(tmp_path_factory.mktemp("keyed-desk"), config)
    yield desk
    _stop(desk.proc)


@pytest.fixture(scope="module")
def doubles():
    """An Ollama double and a ComfyUI double (with the checkpoint the built-in workflow uses)."""
    ollama = start_double("ollama")
    try:
        comfy = start_double("comfyui", "--checkpoints", "juggernautXL_ragnarokBy.safetensors")
    except Exception:
        _stop(ollama.proc)
        raise
    yield ollama, comfy
    _stop(ollama.proc)
    _stop(comfy.proc)


@pytest.fixture(scope="module")
def live_desk(tmp_path_factory, doubles):
    """The Desk in live mode, its ollama and comfyui providers pointed at the doubles."""
    ollama, comfy = doubles
    config = f"""
generator_mode = "live"

[server]
bind = "127.0.0.1:0"

[llm.providers.ollama]
base_url = "{ollama.url}"

[media.providers.comfyui]
base_url = "{comfy.url}"
"""
    desk = start_desk(tmp_path_factory.mktemp("live-desk"), config)
    yield desk
    _stop(desk.proc)
