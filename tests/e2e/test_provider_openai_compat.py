"""The OpenAI-compatible provider plugins (azure, mistral, groq, together,
fireworks, databricks) end to end: the official OpenAI SDK talks to the real
gateway binary, which runs each real plugin against a fake upstream speaking
that provider's dialect of the OpenAI API (fake_openai_compat.py).

Every test runs once per provider and checks both what the client gets and
what reached the upstream: route (deployment, api-version, serving
endpoint), credential header, and the body fields each provider names its
own way (max_tokens vs max_completion_tokens, Mistral's random_seed, no
model for Databricks, stream_options only where the upstream takes it)."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest
from openai import OpenAI

from fake_openai import content_text, vector_for
from fake_openai_compat import AZURE, MISTRAL_TOOL_ID, PROFILES, RETRY_AFTER_SECONDS, FakeOpenAICompat
from harness import Gateway, launch_gateway, require_built
from provider_helpers import WEATHER_TOOL, fresh_client

PROVIDERS = list(PROFILES)
CLIENT_KEY = "client-side-dummy"


# Per provider: upstream models of the chat, vision and embeddings endpoints,
# and the fields the upstream body must (not) carry.
MODELS = {
    "azure": ("gpt-4o", "gpt-4o", "text-embedding-3-small"),
    "mistral": ("mistral-small-latest", "mistral-medium-latest", "mistral-embed"),
    "groq": ("llama-3.3-70b-versatile", "meta-llama/llama-4-scout-17b-16e-instruct", None),
    "together": (
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
        "BAAI/bge-large-en-v1.5",
    ),
    "fireworks": (
        "accounts/fireworks/models/llama-v3p1-70b-instruct",
        "accounts/fireworks/models/llama4-maverick-instruct-basic",
        "nomic-ai/nomic-embed-text-v1.5",
    ),
    "databricks": ("databricks-meta-llama-3-3-70b-instruct", "databricks-llama-4-maverick", "databricks-gte-large-en"),
}
MAX_TOKENS_FIELD = {
    "azure": "max_completion_tokens",
    "mistral": "max_tokens",
    "groq": "max_completion_tokens",
    "together": "max_tokens",
    "fireworks": "max_tokens",
    "databricks": "max_tokens",
}
SEED_FIELD = {p: "random_seed" if p == "mistral" else "seed" for p in PROVIDERS}
SENDS_STREAM_OPTIONS = {"azure", "groq"}
# Azure addresses deployments, Databricks serving endpoints, by path.
DEPLOYMENTS = {"chat": "prod-4o", "vision": "prod-4o", "embed": "embed-small"}
AZURE_EMBED_API_VERSION = "2024-06-01"


@dataclass
class Stack:
    gateway: Gateway
    fakes: dict[str, FakeOpenAICompat]
    keys: dict[str, str]
    entra_token: str


def _endpoint(name: str, provider: str, model: str, config: dict[str, str]) -> str:
    lines = ["[[endpoints]]", f'name = "{name}"', f'provider = "{provider}"', f'model = "{model}"', "[endpoints.config]"]
    lines += [f'{k} = "{v}"' for k, v in config.items()]
    return "\n".join(lines) + "\n\n"


def _config(provider: str, fake: FakeOpenAICompat, kind: str, key: str, target: str) -> tuple[str, dict[str, str]]:
    """(upstream model, config) of endpoint `kind` of `provider`; `target`
    overrides the model / deployment / serving endpoint (error triggers)."""
    chat, vision, embed = MODELS[provider]
    model = {"chat": chat, "vision": vision, "embed": embed or chat}.get(kind, chat)
    if provider == "azure":
        config = {
            "endpoint": "https://my-resource.openai.azure.com",
            "base_url": fake.root_url,
            "deployment": target or DEPLOYMENTS.get(kind, "prod-4o"),
            "api_key": key,
        }
        if kind == "embed":
            config["api_version"] = AZURE_EMBED_API_VERSION
        return model, config
    if provider == "databricks":
        return target or model, {
            "workspace_url": "https://adb-1234567890123456.7.azuredatabricks.net",
            "base_url": fake.root_url,
            "token": key,
        }
    return target or model, {"api_key": key, "base_url": fake.base_url}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    require_built(*PROVIDERS)
    keys = {p: f"{p}-key-" + secrets.token_hex(8) for p in PROVIDERS}
    entra = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_hex(16)
    fakes = {p: FakeOpenAICompat(PROFILES[p], keys[p], entra if p == "azure" else "").start() for p in PROVIDERS}
    work = tmp_path_factory.mktemp("openai-compat")
    env = {f"E2E_{p.upper()}_KEY": keys[p] for p in PROVIDERS}
    env["E2E_AZURE_ENTRA"] = entra
    text = ""
    for p, fake in fakes.items():
        key_ref = "${E2E_" + p.upper() + "_KEY}"
        for kind, key, target in [
            ("chat", key_ref, ""),
            ("vision", key_ref, ""),
            ("embed", key_ref, ""),
            ("limited", key_ref, "force-429"),
            ("bad-key", "wrong-key", ""),
        ]:
            model, config = _config(p, fake, kind, key, target)
            text += _endpoint(f"{p}-{kind}", p, model, config)
    model, config = _config("azure", fakes["azure"], "chat", "${E2E_AZURE_ENTRA}", "")
    text += _endpoint("azure-entra", "azure", model, {**config, "auth": "entra"})
    model, config = _config("azure", fakes["azure"], "chat", "${E2E_AZURE_KEY}", "force-content-filter")
    text += _endpoint("azure-filtered", "azure", model, config)
    config_path = work / "portico.toml"
    config_path.write_text(text)
    try:
        with launch_gateway(work, config_path, env=env) as gw:
            yield Stack(gateway=gw, fakes=fakes, keys=keys, entra_token=entra)
    finally:
        for fake in fakes.values():
            fake.stop()


@dataclass
class Case:
    provider: str
    fake: FakeOpenAICompat
    client: OpenAI
    key: str
    gateway: Gateway

    def endpoint(self, kind: str) -> str:
        return f"{self.provider}-{kind}"

    def model(self, kind: str = "chat") -> str:
        chat, vision, embed = MODELS[self.provider]
        return {"chat": chat, "vision": vision, "embed": embed}[kind]


@pytest.fixture(params=PROVIDERS)
def case(request, stack: Stack) -> Case:
    fake = stack.fakes[request.param]
    client = fresh_client(stack.gateway, fake, api_key=CLIENT_KEY)
    return Case(provider=request.param, fake=fake, client=client, key=stack.keys[request.param], gateway=stack.gateway)


def assert_route(case: Case, rec, kind: str, operation: str) -> None:
    """Path, query and credential of an upstream request."""
    p = case.provider
    if p == "azure":
        suffix = "chat/completions" if operation == "chat" else "embeddings"
        assert rec.path == f"/openai/deployments/{DEPLOYMENTS[kind]}/{suffix}"
        version = AZURE_EMBED_API_VERSION if kind == "embed" else AZURE.api_version
        assert rec.query_params == {"api-version": [version]}
        assert rec.headers.get("api-key") == case.key
        assert "authorization" not in rec.headers
    elif p == "databricks":
        assert rec.path == f"/serving-endpoints/{case.model(kind)}/invocations"
        assert rec.query == ""
        assert rec.headers.get("authorization") == f"Bearer {case.key}"
    else:
        suffix = "chat/completions" if operation == "chat" else "embeddings"
        assert rec.path == f"{case.fake.profile.prefix}/{suffix}"
        assert rec.query == ""
        assert rec.headers.get("authorization") == f"Bearer {case.key}"
        assert rec.json["model"] == case.model(kind)
    if p == "databricks":
        assert "model" not in rec.json, "the serving endpoint is in the path"
    for name, value in rec.headers.items():
        assert CLIENT_KEY not in value, f"client key leaked upstream in {name}"


# -- chat -----------------------------------------------------------------------


def test_chat_with_system_and_sampling_params(case: Case):
    resp = case.client.chat.completions.create(
        model=case.endpoint("chat"),
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "Say grüezi to Portico"},
        ],
        temperature=0.25,
        top_p=0.5,
        max_tokens=64,
        stop=["END"],
        seed=7,
    )
    rec = case.fake.only_request()
    assert resp.choices[0].message.content == "Echo: Say grüezi to Portico"
    assert resp.choices[0].finish_reason == "stop"
    sent = rec.response_json
    assert resp.usage.prompt_tokens == sent["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == sent["usage"]["completion_tokens"]

    assert_route(case, rec, "chat", "chat")
    body = rec.json
    assert [(m["role"], content_text(m["content"])) for m in body["messages"]] == [
        ("system", "You are terse."),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "Say grüezi to Portico"),
    ]
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.5
    assert body["stop"] in (["END"], "END")
    max_field = MAX_TOKENS_FIELD[case.provider]
    other = {"max_tokens", "max_completion_tokens"} - {max_field}
    assert body[max_field] == 64
    assert not other & set(body), f"{case.provider} must get only {max_field}"
    seed_field = SEED_FIELD[case.provider]
    assert body[seed_field] == 7
    if seed_field != "seed":
        assert "seed" not in body
    assert not body.get("stream")
    if case.provider == "databricks":
        assert "model" not in body, "the serving endpoint is in the path"


def test_chat_finish_reason_length(case: Case):
    resp = case.client.chat.completions.create(
        model=case.endpoint("chat"), messages=[{"role": "user", "content": "one two three four"}], max_tokens=3
    )
    assert resp.choices[0].message.content == "Echo: one two"
    assert resp.choices[0].finish_reason == "length"


# -- streaming ------------------------------------------------------------------


def test_stream_with_usage(case: Case):
    chunks = list(
        case.client.chat.completions.create(
            model=case.endpoint("chat"),
            messages=[{"role": "user", "content": "tell me a short störy 👋"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = case.fake.only_request()
    assert rec.response_status == 200, rec.response_json
    content = [c for c in chunks if c.choices]
    pieces = [c.choices[0].delta.content for c in content if c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: tell me a short störy 👋"
    assert len(pieces) > 1
    assert all(c.id and c.id == chunks[0].id for c in chunks), "every chunk carries the completion's id"
    assert [c.choices[0].finish_reason for c in content if c.choices[0].finish_reason] == ["stop"]

    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    # Wherever the provider puts it (own chunk, finish chunk, x_groq,
    # cumulative on every chunk), the client gets the final usage.
    sent = [e for e in rec.response_events if isinstance(e, dict)]
    final_usage = next(
        u
        for e in reversed(sent)
        for u in [e.get("usage") or (e.get("x_groq") or {}).get("usage")]
        if u
    )
    assert usage_chunk.usage.prompt_tokens == final_usage["prompt_tokens"]
    assert usage_chunk.usage.completion_tokens == final_usage["completion_tokens"]

    assert_route(case, rec, "chat", "chat")
    body = rec.json
    assert body["stream"] is True
    if case.provider in SENDS_STREAM_OPTIONS:
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in body
    if case.provider == "azure":
        assert sent[0]["prompt_filter_results"] and sent[0]["choices"] == [], "the fake led with Azure's filter chunk"
    if case.provider == "databricks":
        assert "[DONE]" not in rec.response_events


# -- tools ------------------------------------------------------------------------


def test_tool_call_round_trip(case: Case):
    messages = [{"role": "user", "content": "Paris"}]
    resp = case.client.chat.completions.create(
        model=case.endpoint("chat"), messages=messages, tools=[WEATHER_TOOL], tool_choice="required"
    )
    first = case.fake.only_request()
    sent_call = first.response_json["choices"][0]["message"]["tool_calls"][0]
    up_tools = first.json["tools"]
    assert up_tools == [WEATHER_TOOL]
    assert first.json["tool_choice"] == ("any" if case.provider == "mistral" else "required")

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == sent_call["id"]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    case.fake.reset()
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    resp2 = case.client.chat.completions.create(model=case.endpoint("chat"), messages=messages, tools=[WEATHER_TOOL])
    assert resp2.choices[0].message.content == "Tool result: 18 degrees and sunny"

    up = case.fake.only_request().json["messages"]
    assert [m["role"] for m in up] == ["user", "assistant", "tool"]
    assert up[1]["tool_calls"][0]["id"] == call.id
    assert json.loads(up[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert up[2]["tool_call_id"] == call.id
    assert content_text(up[2]["content"]) == "18 degrees and sunny"


def test_streamed_tool_call(case: Case):
    chunks = list(
        case.client.chat.completions.create(
            model=case.endpoint("chat"),
            messages=[{"role": "user", "content": "Lisbon"}],
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = case.fake.only_request()
    sent_ids = [
        tc["id"]
        for e in rec.response_events
        if isinstance(e, dict)
        for c in e["choices"]
        for tc in c["delta"].get("tool_calls") or []
        if tc.get("id")
    ]
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].id == sent_ids[0]
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Lisbon"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_mistral_gets_valid_ids_for_foreign_tool_calls(stack: Stack):
    """A conversation begun on another provider carries `call_…` ids, which
    Mistral rejects: the plugin maps them, consistently for call and result."""
    fake = stack.fakes["mistral"]
    client = fresh_client(stack.gateway, fake, api_key=CLIENT_KEY)
    foreign = "call_Zx81TkfJQ2a4sPrM0bLq"
    resp = client.chat.completions.create(
        model="mistral-chat",
        messages=[
            {"role": "user", "content": "Bern"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": foreign, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Bern"}'}}],
            },
            {"role": "tool", "tool_call_id": foreign, "content": "12 degrees"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert resp.choices[0].message.content == "Tool result: 12 degrees"
    up = fake.only_request().json["messages"]
    mapped = up[1]["tool_calls"][0]["id"]
    assert MISTRAL_TOOL_ID.match(mapped) and mapped != foreign
    assert up[2]["tool_call_id"] == mapped


def test_anthropic_thinking_becomes_reasoning_effort_except_for_mistral(case: Case):
    """An Anthropic client's thinking budget reaches each OpenAI-compatible
    upstream as the reasoning_effort level that covers it; Mistral, which
    refuses fields it does not know (its fake too, with a 422), gets none."""
    claude = anthropic.Anthropic(base_url=case.gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
    answer = claude.messages.create(
        model=case.endpoint("chat"),
        max_tokens=8000,
        thinking={"type": "enabled", "budget_tokens": 3000},
        messages=[{"role": "user", "content": "think first"}],
    )
    assert answer.content[-1].text == "Echo: think first"
    rec = case.fake.only_request()
    assert rec.response_status == 200
    expected = None if case.provider == "mistral" else "medium"
    assert rec.json.get("reasoning_effort") == expected
    assert "thinking" not in rec.json


# -- vision -----------------------------------------------------------------------


def test_vision_images_are_forwarded(case: Case):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
    data_url = f"data:image/png;base64,{png}"
    web_url = "https://example.com/cat.jpg"
    resp = case.client.chat.completions.create(
        model=case.endpoint("vision"),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "image_url", "image_url": {"url": web_url}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 2 image(s). Echo: What is in these?"
    rec = case.fake.only_request()
    assert_route(case, rec, "vision", "chat")
    parts = rec.json["messages"][-1]["content"]
    assert [p["image_url"]["url"] for p in parts if p["type"] == "image_url"] == [data_url, web_url]


# -- embeddings -----------------------------------------------------------------


def test_embeddings(case: Case):
    inputs = ["alpha", "beta gamma"]
    if case.provider == "groq":
        with pytest.raises(openai.BadRequestError) as e:
            case.client.embeddings.create(model=case.endpoint("embed"), input=inputs)
        assert e.value.status_code == 400
        assert "does not support embeddings" in e.value.message
        assert case.fake.requests == [], "nothing may reach Groq for an operation it lacks"
        return
    resp = case.client.embeddings.create(model=case.endpoint("embed"), input=inputs, encoding_format="float")
    rec = case.fake.only_request()
    assert [d.embedding for d in resp.data] == [vector_for(t) for t in inputs]
    assert resp.usage.prompt_tokens == rec.response_json["usage"]["prompt_tokens"]
    assert_route(case, rec, "embed", "embeddings")
    body = rec.json
    assert body["input"] == inputs
    if case.provider == "databricks":
        assert body == {"input": inputs}, "serving endpoints get just the input"


def test_embeddings_dimensions(case: Case):
    if case.provider in ("groq", "databricks"):
        pytest.skip(f"{case.provider} embeddings have no dimensions parameter")
    resp = case.client.embeddings.create(model=case.endpoint("embed"), input="alpha", encoding_format="float", dimensions=3)
    assert resp.data[0].embedding == vector_for("alpha", 3)
    body = case.fake.only_request().json
    if case.provider == "mistral":
        assert body["output_dimension"] == 3 and "dimensions" not in body
    else:
        assert body["dimensions"] == 3


# -- errors -----------------------------------------------------------------------


def test_upstream_429_is_rate_limit_error_with_retry_after(case: Case):
    with pytest.raises(openai.RateLimitError) as e:
        case.client.chat.completions.create(model=case.endpoint("limited"), messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 429
    assert e.value.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    rec = case.fake.only_request()
    assert rec.response_status == 429, "the gateway must not retry a 429 by itself"


def test_upstream_429_on_stream(case: Case):
    with pytest.raises(openai.RateLimitError):
        list(
            case.client.chat.completions.create(
                model=case.endpoint("limited"), messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert case.fake.only_request().response_status == 429


def test_upstream_401_is_authentication_error(case: Case):
    with pytest.raises(openai.AuthenticationError) as e:
        case.client.chat.completions.create(model=case.endpoint("bad-key"), messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    rec = case.fake.only_request()
    assert rec.response_status == 401
    assert "wrong-key" not in e.value.message, "credentials never appear in error messages"
    expected = {"mistral": "Unauthorized", "groq": "Invalid API Key"}.get(case.provider)
    if expected:
        assert expected in e.value.message


# -- Azure specifics ----------------------------------------------------------------


def test_azure_entra_token_is_a_bearer(stack: Stack):
    fake = stack.fakes["azure"]
    client = fresh_client(stack.gateway, fake, api_key=CLIENT_KEY)
    resp = client.chat.completions.create(model="azure-entra", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "Echo: hi"
    rec = fake.only_request()
    assert rec.headers.get("authorization") == f"Bearer {stack.entra_token}"
    assert "api-key" not in rec.headers


def test_azure_content_filter_rejection_is_bad_request(stack: Stack):
    fake = stack.fakes["azure"]
    client = fresh_client(stack.gateway, fake, api_key=CLIENT_KEY)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure-filtered", messages=[{"role": "user", "content": "something"}])
    assert e.value.status_code == 400
    assert "content management policy" in e.value.message
    rec = fake.only_request()
    assert rec.path == "/openai/deployments/force-content-filter/chat/completions"
    assert rec.response_json["error"]["code"] == "content_filter"
