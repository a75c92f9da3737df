"""Gateway keys and rate limits with the official OpenAI, Anthropic and
Google Gen AI SDKs, through the real gateway started with --require-keys,
against the fake OpenAI upstream.

Each SDK sends the gateway key its normal way (OpenAI: `Authorization:
Bearer`, Anthropic: `x-api-key`, Gen AI: `x-goog-api-key`) and gets refusals
as its own error types, with `Retry-After` on 429."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors

from conftest import CHAT, EMBED, KEY_VAR, write_config
from fake_openai import FakeOpenAI
from harness import Gateway, free_port, launch_gateway, require_built

ADMIN_TOKEN = "access-admin-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def keyed(fake_upstream: FakeOpenAI, upstream_key: str, tmp_path_factory) -> Gateway:
    """A gateway that requires gateway keys (set through the environment)."""
    require_built("openai")
    work = tmp_path_factory.mktemp("access-gateway")
    config = work / "portico.toml"
    write_config(config, fake_upstream, down_port=free_port())
    env = {KEY_VAR: upstream_key, "PORTICO_REQUIRE_KEYS": "true", "PORTICO_ADMIN_TOKEN": ADMIN_TOKEN}
    with launch_gateway(work, config, env=env) as gw:
        gw.upstream_key = upstream_key
        yield gw


def admin(gw: Gateway, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return requests.request(method, f"{gw.url}/api/v1{path}", headers=headers, timeout=10, **kwargs)


def create_key(gw: Gateway, **body) -> tuple[str, dict]:
    body.setdefault("name", "e2e-" + secrets.token_hex(3))
    r = admin(gw, "POST", "/keys", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    return created["key"], created


def oai(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0, timeout=30)


def claude(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.anthropic_base_url, api_key=key, max_retries=0, timeout=30)


def gemini(gw: Gateway, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": gw.gemini_base_url})


def chat_openai(gw: Gateway, key: str, endpoint: str = CHAT, text: str = "hello there") -> str:
    response = oai(gw, key).chat.completions.create(model=endpoint, messages=[{"role": "user", "content": text}])
    return response.choices[0].message.content


def chat_claude(gw: Gateway, key: str, endpoint: str = CHAT) -> str:
    response = claude(gw, key).messages.create(
        model=endpoint, max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
    )
    return response.content[0].text


def chat_gemini(gw: Gateway, key: str, endpoint: str = CHAT) -> str:
    # Keep the client referenced: collecting it closes its HTTP client.
    client = gemini(gw, key)
    return client.models.generate_content(model=endpoint, contents="hello there").text


def assert_upstream_never_saw(fake: FakeOpenAI, key: str, upstream_key: str) -> None:
    assert fake.requests, "the upstream got no request"
    for rec in fake.requests:
        assert rec.headers.get("authorization") == f"Bearer {upstream_key}", rec.headers
        everything = repr(rec.headers) + rec.path + rec.body.decode(errors="replace")
        assert key not in everything
        assert key[:10] not in everything


# -- keys accepted and refused ------------------------------------------------


def test_valid_key_works_with_each_sdk(keyed: Gateway, fake_upstream: FakeOpenAI):
    key, _ = create_key(keyed)
    assert chat_openai(keyed, key) == "Echo: hello there"
    assert chat_claude(keyed, key) == "Echo: hello there"
    assert chat_gemini(keyed, key) == "Echo: hello there"
    # Streams and embeddings too.
    stream = oai(keyed, key).chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "stream it"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: stream it"
    vectors = oai(keyed, key).embeddings.create(model=EMBED, input="x")
    assert len(vectors.data) == 1
    assert len(fake_upstream.requests) == 5
    assert_upstream_never_saw(fake_upstream, key, keyed.upstream_key)


@pytest.mark.parametrize("presented", ["dummy", "sk-proj-not-a-gateway-key", "pk_" + "x" * 40])
def test_unknown_key_is_401_in_each_dialect(keyed: Gateway, fake_upstream: FakeOpenAI, presented: str):
    with pytest.raises(openai.AuthenticationError) as oai_error:
        chat_openai(keyed, presented)
    assert oai_error.value.status_code == 401
    assert oai_error.value.body["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as claude_error:
        chat_claude(keyed, presented)
    assert claude_error.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(genai_errors.ClientError) as gemini_error:
        chat_gemini(keyed, presented)
    assert gemini_error.value.code == 401
    assert gemini_error.value.status == "UNAUTHENTICATED"
    assert fake_upstream.requests == []


def test_missing_key_header_entirely(keyed: Gateway):
    r = requests.post(
        f"{keyed.openai_base_url}/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert r.status_code == 401
    assert "gateway key" in r.json()["error"]["message"]
    # The admin token is not a gateway key.
    r = requests.post(
        f"{keyed.openai_base_url}/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert r.status_code == 401


def test_gemini_key_in_query(keyed: Gateway):
    key, _ = create_key(keyed)
    body = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
    url = f"{keyed.gemini_base_url}/v1beta/models/{CHAT}:generateContent"
    assert requests.post(f"{url}?key={key}", json=body, timeout=10).status_code == 200
    assert requests.post(f"{url}?key=pk_nope", json=body, timeout=10).status_code == 401


def test_revoked_key_is_refused_at_once(keyed: Gateway):
    key, created = create_key(keyed)
    assert chat_openai(keyed, key) == "Echo: hello there"
    r = admin(keyed, "DELETE", f"/keys/{created['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError):
        chat_openai(keyed, key)
    with pytest.raises(anthropic.AuthenticationError):
        chat_claude(keyed, key)
    with pytest.raises(genai_errors.ClientError) as error:
        chat_gemini(keyed, key)
    assert error.value.code == 401


def test_key_limited_to_an_endpoint_is_403_elsewhere(keyed: Gateway):
    key, created = create_key(keyed, endpoints=[CHAT])
    assert created["endpoints"] == [CHAT]
    assert chat_openai(keyed, key, CHAT) == "Echo: hello there"
    with pytest.raises(openai.PermissionDeniedError) as oai_error:
        oai(keyed, key).embeddings.create(model=EMBED, input="x")
    assert oai_error.value.status_code == 403
    with pytest.raises(anthropic.PermissionDeniedError):
        chat_claude(keyed, key, EMBED)
    with pytest.raises(genai_errors.ClientError) as gemini_error:
        chat_gemini(keyed, key, EMBED)
    assert gemini_error.value.code == 403


def test_a_key_limited_to_an_endpoint_lists_only_that_one(keyed: Gateway):
    """Each dialect's model list shows a key the endpoints it may call, and
    looking up another is refused as a call to it would be."""
    key, _ = create_key(keyed, endpoints=[CHAT])
    assert [m.id for m in oai(keyed, key).models.list()] == [CHAT]
    assert [m.id for m in claude(keyed, key).models.list()] == [CHAT]
    client = gemini(keyed, key)
    assert [m.name for m in client.models.list()] == [f"models/{CHAT}"]
    with pytest.raises(genai_errors.ClientError) as gemini_error:
        client.models.get(model=EMBED)
    assert gemini_error.value.code == 403
    with pytest.raises(openai.PermissionDeniedError):
        oai(keyed, key).models.retrieve(EMBED)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(keyed, key).models.retrieve(EMBED)
    assert oai(keyed, key).models.retrieve(CHAT).id == CHAT
    # An unrestricted key sees them all.
    everything, _ = create_key(keyed)
    assert {CHAT, EMBED} <= {m.id for m in oai(keyed, everything).models.list()}


def test_management_api_shows_prefix_only_and_needs_the_admin_token(keyed: Gateway):
    key, created = create_key(keyed, name="listing", requests_per_minute=100, tokens_per_minute=5000)
    assert created["prefix"] == key[:10]
    listed = admin(keyed, "GET", "/keys")
    assert listed.status_code == 200
    assert key not in listed.text and key[10:] not in listed.text
    mine = [k for k in listed.json() if k["id"] == created["id"]]
    assert mine and mine[0]["prefix"] == key[:10]
    assert mine[0]["requests_per_minute"] == 100 and mine[0]["tokens_per_minute"] == 5000
    assert "key" not in mine[0] and "hash" not in mine[0]
    one = admin(keyed, "GET", f"/keys/{created['id']}")
    assert one.status_code == 200 and key not in one.text
    assert requests.get(f"{keyed.url}/api/v1/keys", timeout=10).status_code == 401
    missing = admin(keyed, "DELETE", "/keys/key_missing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    bad = admin(keyed, "POST", "/keys", json={"name": "x", "endpoints": []})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request"


# -- rate limits ---------------------------------------------------------------


def _burst(call, count: int) -> tuple[int, list[Exception]]:
    """Runs `count` calls at once; returns the successes and the errors."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(call) for _ in range(count)]
    ok, errors = 0, []
    for future in futures:
        error = future.exception()
        if error is None:
            ok += 1
        else:
            errors.append(error)
    return ok, errors


def test_key_request_limit_under_concurrent_load(keyed: Gateway):
    key, _ = create_key(keyed, requests_per_minute=10)
    ok, errors = _burst(lambda: chat_openai(keyed, key), 30)
    assert ok == 10, errors[:3]
    assert len(errors) == 20
    for error in errors:
        assert isinstance(error, openai.RateLimitError), repr(error)
        retry_after = int(error.response.headers["retry-after"])
        assert 1 <= retry_after <= 6
    # The limit is the key's: another key is served.
    other, _ = create_key(keyed)
    assert chat_openai(keyed, other) == "Echo: hello there"


def test_key_token_limit(keyed: Gateway):
    # Each call uses a handful of tokens; a budget of 3 a minute is spent
    # by the first call, so the next is refused until it refills.
    key, _ = create_key(keyed, tokens_per_minute=3)
    assert chat_claude(keyed, key) == "Echo: hello there"
    with pytest.raises(anthropic.RateLimitError) as error:
        chat_claude(keyed, key)
    assert int(error.value.response.headers["retry-after"]) >= 1
    assert "tokens per minute" in error.value.message
    with pytest.raises(genai_errors.ClientError) as gemini_error:
        chat_gemini(keyed, key)
    assert gemini_error.value.code == 429


def test_endpoint_request_limit_under_concurrent_load(keyed: Gateway, fake_upstream: FakeOpenAI):
    name = "e2e-limited-" + secrets.token_hex(3)
    r = admin(
        keyed,
        "POST",
        "/endpoints",
        json={
            "name": name,
            "provider": "openai",
            "model": "gpt-fake-mini",
            "config": {"api_key": keyed.upstream_key, "base_url": fake_upstream.base_url},
            "policy": {"limits": {"requests_per_minute": 10}},
        },
    )
    if r.status_code == 400 and "policy" in r.text:
        pytest.skip(f"this build does not take endpoint policies through the API yet: {r.text}")
    assert r.status_code == 201, r.text
    key, _ = create_key(keyed)
    ok, errors = _burst(lambda: chat_gemini(keyed, key, name), 30)
    assert ok == 10, errors[:3]
    for error in errors:
        assert isinstance(error, genai_errors.ClientError) and error.code == 429, repr(error)
    # Other endpoints are not limited by it.
    assert chat_openai(keyed, key) == "Echo: hello there"


# -- keys not required (the default) ------------------------------------------


def test_default_gateway_accepts_any_api_key(gateway: Gateway):
    assert chat_openai(gateway, "dummy") == "Echo: hello there"
    assert chat_claude(gateway, "dummy") == "Echo: hello there"
    assert chat_gemini(gateway, "dummy") == "Echo: hello there"
