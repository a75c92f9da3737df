"""Endpoints managed through the REST API, end to end: the real gateway
binary with the real openai plugin, started with an empty endpoints file and
an admin token; endpoints created, changed and deleted over HTTP take effect
for the official OpenAI SDK at once, and survive a restart (secrets
encrypted in the data dir)."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI

from fake_openai import FakeOpenAI
from harness import Gateway, launch_gateway, require_built

NAME = "managed-chat"
MODEL = "gpt-fake-mini"


@pytest.fixture(scope="module")
def upstream():
    # Our own fake: this module changes the key it accepts.
    fake = FakeOpenAI(api_key="sk-managed-" + secrets.token_hex(8)).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeOpenAI):
    upstream.reset()


class Api:
    def __init__(self, gw: Gateway, token: str) -> None:
        self.base = f"{gw.url}/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.base}{path}", headers=self.headers, timeout=10, **kwargs)


def chat(gw: Gateway, model: str = NAME) -> str:
    client = OpenAI(base_url=gw.openai_base_url, api_key="ignored-by-the-gateway", max_retries=0)
    response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
    return response.choices[0].message.content


def test_endpoint_lifecycle_through_the_rest_api(tmp_path: Path, upstream: FakeOpenAI):
    require_built("openai")
    config = tmp_path / "portico.toml"
    config.write_text("")  # no declared endpoints: everything comes from the API
    token = secrets.token_urlsafe(24)
    first_key = upstream.api_key

    with launch_gateway(tmp_path, config, extra_args=["--admin-token", token]) as gw:
        api = Api(gw, token)

        # The admin token is required.
        r = requests.get(f"{gw.url}/api/v1/endpoints", timeout=10)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "unauthorized"
        assert api("GET", "/endpoints").json() == []

        # Create: secrets masked in the answer.
        r = api(
            "POST",
            "/endpoints",
            json={
                "name": NAME,
                "provider": "openai",
                "model": MODEL,
                "config": {"api_key": first_key, "base_url": upstream.base_url},
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["config"] == {"api_key": "********", "base_url": upstream.base_url}
        assert created["secrets_set"] == ["api_key"]
        assert created["source"] == "api"
        assert first_key not in r.text

        # Usable at once from the official SDK; the upstream gets the key.
        assert chat(gw) == "Echo: hello there"
        rec = upstream.only_request()
        assert rec.headers["authorization"] == f"Bearer {first_key}"
        assert rec.json["model"] == MODEL

        # Validation is reported as JSON errors.
        r = api("POST", "/endpoints", json={"name": NAME, "provider": "openai", "model": MODEL, "config": {}})
        assert r.status_code == 409
        r = api("POST", "/endpoints", json={"name": "x", "provider": "openai", "model": MODEL, "config": {}})
        assert r.status_code == 400 and "api_key" in r.json()["error"]["message"]

        # Update with a new key: the next request uses it.
        second_key = "sk-rotated-" + secrets.token_hex(8)
        upstream.api_key = second_key
        upstream.reset()
        r = api(
            "PUT",
            f"/endpoints/{NAME}",
            json={"provider": "openai", "model": MODEL, "config": {"api_key": second_key, "base_url": upstream.base_url}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["config"]["api_key"] == "********"
        assert chat(gw) == "Echo: hello there"
        assert upstream.only_request().headers["authorization"] == f"Bearer {second_key}"

        # Delete: the SDK gets a 404 and nothing reaches the upstream.
        upstream.reset()
        r = api("DELETE", f"/endpoints/{NAME}")
        assert r.status_code == 204
        with pytest.raises(openai.NotFoundError):
            chat(gw)
        assert upstream.requests == []
        assert api("GET", f"/endpoints/{NAME}").status_code == 404

        # One more, to find after the restart.
        r = api(
            "POST",
            "/endpoints",
            json={
                "name": "kept",
                "provider": "openai",
                "model": MODEL,
                "config": {"api_key": second_key, "base_url": upstream.base_url},
            },
        )
        assert r.status_code == 201, r.text
        kept = r.json()

    # At rest: the key is not in the database files; the key file is private.
    data = tmp_path / "data"
    stored = b"".join(p.read_bytes() for p in data.iterdir() if p.name.startswith("portico.db"))
    assert stored, "no database in the data dir"
    assert second_key.encode() not in stored
    assert first_key.encode() not in stored
    assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600

    # Restart with the same data dir: still there, and it still works.
    upstream.reset()
    with launch_gateway(tmp_path, config, extra_args=["--admin-token", token]) as gw:
        api = Api(gw, token)
        assert api("GET", "/endpoints").json() == [kept]
        assert chat(gw, "kept") == "Echo: hello there"
        assert upstream.only_request().headers["authorization"] == f"Bearer {second_key}"
        assert second_key not in gw.log_text()
        assert first_key not in gw.log_text()


def test_declared_endpoints_are_listed_as_file_sourced(tmp_path: Path, upstream: FakeOpenAI):
    require_built("openai")
    config = tmp_path / "portico.toml"
    config.write_text(
        "[[endpoints]]\n"
        'name = "declared"\n'
        'provider = "openai"\n'
        f'model = "{MODEL}"\n'
        "[endpoints.config]\n"
        'api_key = "${MANAGED_E2E_KEY}"\n'
        f'base_url = "{upstream.base_url}"\n'
    )
    with launch_gateway(tmp_path, config, env={"MANAGED_E2E_KEY": upstream.api_key}) as gw:
        r = requests.get(f"{gw.url}/api/v1/endpoints/declared", timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source"] == "file"
        assert body["config"]["api_key"] == "********"
        assert upstream.api_key not in r.text
        # The file owns it: the API may not change it.
        r = requests.delete(f"{gw.url}/api/v1/endpoints/declared", timeout=10)
        assert r.status_code == 409
        assert chat(gw, "declared") == "Echo: hello there"
        assert upstream.only_request().headers["authorization"] == f"Bearer {upstream.api_key}"
