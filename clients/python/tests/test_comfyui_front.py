"""A ComfyUI API client script pointed at the Desk's ComfyUI front (`/comfyui`), in front of
the ComfyUI double: prompt → WebSocket progress → history → view, as ComfyUI's own
`websockets_api_example.py` does it (plain `httpx` and `websocket-client`, pinned in
requirements-ci.txt). Every call asserts content, not just a status.

    cargo build -p sparklio-desk -p sparklio-testkit --bins
    bash clients/python/run-tests.sh -k comfyui_front
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
import websocket  # websocket-client

from conftest import _stop, free_port, start_desk, start_double

GATEWAY = "comfy-gateway-key-0123456789abcdef"
ADMIN = "comfy-admin-key-0123456789abcdefgh"
CHECKPOINT = "sd_xl_base_1.0.safetensors"
PNG = b"\x89PNG\r\n\x1a\n"


def graph(steps: int, prefix: str) -> dict:
    """Text to image in ComfyUI's API format (the KSampler reports progress per step)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red chair", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 7, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


@pytest.fixture(scope="module")
def comfy():
    double = start_double("comfyui", "--checkpoints", CHECKPOINT, "--node-ms", "20")
    yield double
    _stop(double.proc)


@pytest.fixture(scope="module")
def desk(tmp_path_factory, comfy):
    """Live mode; nothing trusted, so every call needs a key."""
    config = f"""
generator_mode = "live"

[server]
bind = "127.0.0.1:0"
trusted_networks = []
api_keys = ["{GATEWAY}"]
admin_keys = ["{ADMIN}"]

[media.providers.comfyui]
base_url = "{comfy.url}"
"""
    d = start_desk(tmp_path_factory.mktemp("comfy-front-desk"), config)
    yield d
    _stop(d.proc)


def http(desk, key=GATEWAY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=desk.url + "/comfyui", headers=headers, timeout=20)


def test_prompt_ws_progress_history_view(desk, comfy):
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(
        desk.url.replace("http://", "ws://") + f"/comfyui/ws?clientId={client_id}",
        header=[f"Authorization: Bearer {GATEWAY}"],
        timeout=10,
    )
    try:
        hello = json.loads(ws.recv())
        assert hello["type"] == "status" and hello["data"]["sid"] == client_id, hello
        with http(desk) as c:
            queued = c.post("/prompt", json={"prompt": graph(3, "pyfront"), "client_id": client_id})
            assert queued.status_code == 200, queued.text
            prompt_id = queued.json()["prompt_id"]
            assert queued.json()["node_errors"] == {}

            seen = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                out = ws.recv()
                if not isinstance(out, str):
                    continue  # binary previews
                msg = json.loads(out)
                seen.append(msg)
                data = msg.get("data", {})
                if msg["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
            else:
                pytest.fail(f"no end message: {seen}")
            types = [m["type"] for m in seen]
            for t in ("execution_start", "executing", "progress", "executed"):
                assert t in types, types
            steps = [m["data"]["value"] for m in seen if m["type"] == "progress"]
            assert steps == [1, 2, 3], steps

            history = c.get(f"/history/{prompt_id}").json()
            entry = history[prompt_id]
            assert entry["status"]["status_str"] == "success"
            image = entry["outputs"]["9"]["images"][0]
            assert image["filename"].startswith("pyfront")

            params = {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]}
            via_desk = c.get("/view", params=params)
            assert via_desk.status_code == 200
            assert via_desk.headers["content-type"] == "image/png"
            assert via_desk.content.startswith(PNG)
            direct = httpx.get(comfy.url + "/view", params=params, timeout=10)
            assert via_desk.content == direct.content

            # The same through /comfyui/api, as newer ComfyUI front-ends call it.
            again = httpx.get(
                desk.url + f"/comfyui/api/history/{prompt_id}",
                headers={"Authorization": f"Bearer {GATEWAY}"},
                timeout=10,
            )
            assert again.json() == history
    finally:
        ws.close()


def test_upload_then_view(desk):
    data = PNG + bytes(range(256)) * 64
    with http(desk) as c:
        r = c.post(
            "/upload/image",
            files={"image": ("ref.png", data, "image/png")},
            data={"type": "input", "overwrite": "true"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"name": "ref.png", "subfolder": "", "type": "input"}
        back = c.get("/view", params={"filename": "ref.png", "type": "input"})
        assert back.content == data


def test_keys_and_admin_routes_answer_in_comfyuis_shape(desk):
    with http(desk, key=None) as c:
        r = c.get("/system_stats")
        assert r.status_code == 401
        body = r.json()
        assert body["error"]["type"] == "unauthorized" and body["node_errors"] == {}, body
    with http(desk) as c:
        stats = c.get("/system_stats").json()
        assert stats["system"]["comfyui_version"], stats
        r = c.post("/free", json={"unload_models": True})
        assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden", r.text
    with http(desk, key=ADMIN) as c:
        assert c.post("/free", json={"unload_models": True}).status_code == 200


def test_down_comfyui_is_a_fast_503(tmp_path):
    config = f"""
generator_mode = "live"

[server]
bind = "127.0.0.1:0"

[media.providers.comfyui]
base_url = "http://127.0.0.1:{free_port()}"
control_timeout_ms = 5000
"""
    d = start_desk(tmp_path / "down", config)
    try:
        started = time.monotonic()
        r = httpx.get(d.url + "/comfyui/queue", timeout=10)
        took = time.monotonic() - started
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "provider_unavailable", r.text
        assert took < 2.0, took
    finally:
        _stop(d.proc)
