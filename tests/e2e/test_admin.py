"""Health and the plugin listing of the management API."""

from __future__ import annotations

import hashlib
import re

import requests

from conftest import PLUGINS_DIR, Gateway


def test_healthz(gateway: Gateway):
    r = requests.get(f"{gateway.url}/healthz", timeout=10)
    assert r.status_code == 200


def test_plugins_lists_openai_as_loaded(gateway: Gateway):
    r = requests.get(f"{gateway.url}/api/v1/plugins", timeout=10)
    assert r.status_code == 200
    plugins = r.json()
    assert isinstance(plugins, list)
    by_id = {p.get("id"): p for p in plugins}
    assert "openai" in by_id, f"openai plugin not listed: {plugins}"
    p = by_id["openai"]

    assert p["status"] == "loaded", p.get("last_error")
    assert not p.get("last_error")
    assert p["display_name"]
    assert p["version"]
    assert p["wit_version"]
    assert p["loaded_at"]
    assert p["file"].endswith("openai.wasm")
    assert re.fullmatch(r"[0-9a-f]{64}", p["sha256"])
    assert p["sha256"] == hashlib.sha256((PLUGINS_DIR / "openai.wasm").read_bytes()).hexdigest()
    assert {"chat", "chat_stream", "embeddings"} <= set(p["operations"])

    for other in plugins:
        assert other["status"] == "loaded", f"plugin {other.get('file')} failed: {other.get('last_error')}"
