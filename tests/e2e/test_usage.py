"""Usage and cost: every call through /gateway lands in the request log with
the tokens the fake upstreams reported, priced from the plugin catalog; the
usage API aggregates them; the request id is returned to the client and is
the one the upstream received.

Three providers in their native dialect (OpenAI, Anthropic, Gemini), each
non-streamed and streamed, through the official SDKs."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import anthropic
import openai
import pytest
import requests
from google import genai

from fake_anthropic import FakeAnthropic
from fake_gemini import FakeGemini
from fake_openai import FakeOpenAI
from harness import Gateway, _tail, launch_gateway, require_built

TOKEN = "usage-admin-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Target:
    provider: str
    endpoint: str
    model: str  # in the plugin's catalog, so it has a price


TARGETS = [
    Target("openai", "u-openai", "gpt-5-mini"),
    Target("anthropic", "u-anthropic", "claude-sonnet-4-5-20250929"),
    Target("gemini", "u-gemini", "gemini-2.5-pro"),
]
UNPRICED = Target("openai", "u-unpriced", "model-not-in-any-catalog")


@pytest.fixture(scope="module")
def fakes():
    keys = {
        "openai": "sk-" + secrets.token_hex(12),
        "anthropic": "sk-ant-" + secrets.token_hex(12),
        "gemini": "AIza" + secrets.token_urlsafe(24),
    }
    started = {
        "openai": FakeOpenAI(api_key=keys["openai"]).start(),
        "anthropic": FakeAnthropic(keys["anthropic"]).start(),
        "gemini": FakeGemini(keys["gemini"]).start(),
    }
    yield started, keys
    for fake in started.values():
        fake.stop()


@pytest.fixture(scope="module")
def gateway(fakes, tmp_path_factory):
    require_built("openai", "anthropic", "gemini")
    started, keys = fakes
    work = tmp_path_factory.mktemp("usage-gateway")
    text = ""
    for t in [*TARGETS, UNPRICED]:
        text += (
            f'[[endpoints]]\nname = "{t.endpoint}"\nprovider = "{t.provider}"\nmodel = "{t.model}"\n'
            f'[endpoints.config]\napi_key = "{keys[t.provider]}"\nbase_url = "{started[t.provider].base_url}"\n\n'
        )
    config = work / "portico.toml"
    config.write_text(text)
    with launch_gateway(work, config, extra_args=["--admin-token", TOKEN]) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(fakes, gateway: Gateway):
    for fake in fakes[0].values():
        fake.reset()
    if gateway.process.poll() is not None:
        pytest.fail(f"gateway exited:\n{_tail(gateway.log_text())}", pytrace=False)
    yield


def api(gw: Gateway, path: str, **params) -> dict:
    r = requests.get(f"{gw.url}/api/v1{path}", params=params, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def logged(gw: Gateway, request_id: str, timeout: float = 10) -> dict:
    """The request log entry of `request_id` (written in batches, so poll)."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in api(gw, "/requests", limit=500)["requests"]:
            if entry["request_id"] == request_id:
                return entry
        assert time.monotonic() < deadline, f"request {request_id} not logged:\n{_tail(gw.log_text())}"
        time.sleep(0.2)


def catalog_price(gw: Gateway, provider: str, model: str) -> tuple[float, float]:
    for p in api(gw, "/providers"):
        if p["id"] == provider:
            for m in p["models"]:
                if m["id"] == model:
                    return m["input_price_per_mtok"], m["output_price_per_mtok"]
    raise AssertionError(f"{provider}/{model} not in the catalog")


def call(gw: Gateway, target: Target, stream: bool, request_id: str) -> tuple[int, int]:
    """One call in the provider's own dialect; returns the usage the client saw."""
    headers = {"x-request-id": request_id}
    prompt = "Tell me about usage accounting in three short words"
    if target.provider == "openai":
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            raw = client.chat.completions.with_raw_response.create(model=target.endpoint, messages=messages, extra_headers=headers)
            assert raw.headers.get("x-request-id") == request_id
            r = raw.parse()
            return r.usage.prompt_tokens, r.usage.completion_tokens
        chunks = list(
            client.chat.completions.create(
                model=target.endpoint, messages=messages, stream=True, stream_options={"include_usage": True}, extra_headers=headers
            )
        )
        usage = next(c.usage for c in reversed(chunks) if c.usage)
        return usage.prompt_tokens, usage.completion_tokens
    if target.provider == "anthropic":
        client = anthropic.Anthropic(base_url=gw.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            raw = client.messages.with_raw_response.create(model=target.endpoint, max_tokens=200, messages=messages, extra_headers=headers)
            assert raw.headers.get("x-request-id") == request_id
            r = raw.parse()
            return r.usage.input_tokens, r.usage.output_tokens
        with client.messages.stream(model=target.endpoint, max_tokens=200, messages=messages, extra_headers=headers) as s:
            final = s.get_final_message()
        return final.usage.input_tokens, final.usage.output_tokens
    client = genai.Client(api_key="dummy", http_options={"base_url": gw.gemini_base_url, "headers": headers})
    try:
        if not stream:
            um = client.models.generate_content(model=target.endpoint, contents=prompt).usage_metadata
        else:
            chunks = list(client.models.generate_content_stream(model=target.endpoint, contents=prompt))
            um = next(c.usage_metadata for c in reversed(chunks) if c.usage_metadata)
    finally:
        client.close()
    return um.prompt_token_count, um.candidates_token_count


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("target", TARGETS, ids=[t.provider for t in TARGETS])
def test_calls_are_logged_with_tokens_cost_and_request_id(gateway, fakes, target: Target, stream: bool):
    request_id = f"test-{target.provider}-{secrets.token_hex(6)}"
    tokens_in, tokens_out = call(gateway, target, stream, request_id)
    assert tokens_in > 0 and tokens_out > 0

    # The upstream received the same request id.
    upstream = fakes[0][target.provider].requests
    assert upstream, "the fake upstream got no request"
    assert upstream[-1].headers.get("x-request-id") == request_id

    entry = logged(gateway, request_id)
    assert entry["endpoint"] == target.endpoint
    assert entry["provider"] == target.provider
    assert entry["model"] == target.model
    assert entry["dialect"] == target.provider
    assert entry["operation"] == ("chat_stream" if stream else "chat")
    assert entry["status"] == 200
    assert (entry["input_tokens"], entry["output_tokens"]) == (tokens_in, tokens_out)
    assert entry["latency_ms"] >= 0
    if stream:
        assert entry["ttft_ms"] is not None and entry["ttft_ms"] <= entry["latency_ms"]
    else:
        assert entry["ttft_ms"] is None
    price_in, price_out = catalog_price(gateway, target.provider, target.model)
    assert price_in > 0 or price_out > 0
    expected = tokens_in * price_in / 1e6 + tokens_out * price_out / 1e6
    assert entry["cost_usd"] == pytest.approx(expected, rel=1e-9)
    # Message contents are never logged.
    assert "usage accounting" not in str(entry)


def test_unknown_model_has_no_cost(gateway):
    request_id = f"test-unpriced-{secrets.token_hex(6)}"
    tokens_in, tokens_out = call(gateway, UNPRICED, False, request_id)
    entry = logged(gateway, request_id)
    assert (entry["input_tokens"], entry["output_tokens"]) == (tokens_in, tokens_out)
    assert entry["cost_usd"] is None


def test_request_ids_on_every_gateway_response(gateway):
    base = gateway.url
    chat = {"model": "u-openai", "messages": [{"role": "user", "content": "hi"}]}
    # A sane client id is kept and echoed.
    r = requests.post(f"{base}/gateway/openai/v1/chat/completions", json=chat, headers={"x-request-id": "client-id-1"}, timeout=30)
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-id-1"
    # An unusable one is replaced by a fresh id.
    r = requests.post(f"{base}/gateway/openai/v1/chat/completions", json=chat, headers={"x-request-id": "bad id!" * 30}, timeout=30)
    assert r.status_code == 200 and r.headers["x-request-id"].startswith("req_")
    # Errors carry one too, and are logged with their status.
    missing = dict(chat, model="u-no-such-endpoint")
    r = requests.post(f"{base}/gateway/openai/v1/chat/completions", json=missing, timeout=30)
    assert r.status_code == 404
    entry = logged(gateway, r.headers["x-request-id"])
    assert (entry["endpoint"], entry["status"], entry["provider"]) == ("u-no-such-endpoint", 404, "")
    # Refused before reaching the gateway: malformed body, unknown route.
    r = requests.post(f"{base}/gateway/anthropic/v1/messages", data=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400
    entry = logged(gateway, r.headers["x-request-id"])
    assert (entry["status"], entry["dialect"], entry["operation"]) == (400, "anthropic", "")
    r = requests.get(f"{base}/gateway/nowhere", timeout=30)
    assert r.status_code == 404 and r.headers["x-request-id"].startswith("req_")
    assert logged(gateway, r.headers["x-request-id"])["status"] == 404
    # Not on the management API.
    assert "x-request-id" not in requests.get(f"{base}/healthz", timeout=10).headers


def test_usage_api_groups_and_totals(gateway):
    t0 = int(time.time() * 1000)
    calls = []
    for target in [TARGETS[0], TARGETS[0], TARGETS[1], TARGETS[2], UNPRICED]:
        rid = f"test-agg-{secrets.token_hex(6)}"
        tokens = call(gateway, target, target is TARGETS[1], rid)
        calls.append((target, tokens, rid))
    latencies = sorted(logged(gateway, rid)["latency_ms"] for _, _, rid in calls)
    window = {"from": t0, "to": int(time.time() * 1000) + 1000}

    usage = api(gateway, "/usage", group_by="endpoint,provider,model", **window)
    rows = {r["endpoint"]: r for r in usage["rows"]}
    assert set(rows) == {t.endpoint for t, _, _ in calls}
    for target in {t for t, _, _ in calls}:
        mine = [tok for t, tok, _ in calls if t == target]
        row = rows[target.endpoint]
        assert (row["provider"], row["model"]) == (target.provider, target.model)
        assert row["requests"] == len(mine)
        assert row["errors"] == 0
        assert row["input_tokens"] == sum(i for i, _ in mine)
        assert row["output_tokens"] == sum(o for _, o in mine)
        if target == UNPRICED:
            assert row["cost_usd"] == 0 and row["unpriced_requests"] == len(mine)
        else:
            price_in, price_out = catalog_price(gateway, target.provider, target.model)
            expected = sum(i * price_in / 1e6 + o * price_out / 1e6 for i, o in mine)
            assert row["cost_usd"] == pytest.approx(expected, rel=1e-9)
            assert row["unpriced_requests"] == 0
    totals = usage["totals"]
    assert totals["requests"] == len(calls)
    assert totals["input_tokens"] == sum(r["input_tokens"] for r in rows.values())
    assert totals["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows.values()))
    # Latency percentiles by nearest rank over the logged latencies.
    for q in (50, 95, 99):
        rank = -(-q * len(latencies) // 100)
        assert totals[f"p{q}_latency_ms"] == latencies[rank - 1], (q, latencies)
    assert totals["max_latency_ms"] == latencies[-1]

    # A time series: per-minute buckets add up to the totals.
    series = api(gateway, "/usage", bucket="minute", **window)
    assert series["bucket"] == "minute"
    assert sum(r["requests"] for r in series["rows"]) == len(calls)
    assert all(r["bucket_start_ms"] % 60000 == 0 for r in series["rows"])
    by_provider = api(gateway, "/usage", group_by="provider", **window)
    assert {r["provider"]: r["requests"] for r in by_provider["rows"]} == {"openai": 3, "anthropic": 1, "gemini": 1}
    by_key = api(gateway, "/usage", group_by="key", **window)
    assert [r["key"] for r in by_key["rows"]] == [""]  # no gateway keys in use

    # Bad parameters are 400; the admin token protects the API.
    r = requests.get(f"{gateway.url}/api/v1/usage", params={"group_by": "colour"}, headers=AUTH, timeout=10)
    assert r.status_code == 400 and "colour" in r.json()["error"]["message"]
    r = requests.get(f"{gateway.url}/api/v1/usage", params={"from": "yesterday"}, headers=AUTH, timeout=10)
    assert r.status_code == 400
    assert requests.get(f"{gateway.url}/api/v1/usage", timeout=10).status_code == 401
    assert requests.get(f"{gateway.url}/api/v1/requests", timeout=10).status_code == 401


def test_request_log_pages(gateway):
    first = api(gateway, "/requests", limit=2)
    assert len(first["requests"]) == 2 and first["next_before_id"] is not None
    second = api(gateway, "/requests", limit=2, before_id=first["next_before_id"])
    assert second["requests"][0]["id"] < first["requests"][-1]["id"]
