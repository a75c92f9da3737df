"""The cohere plugin end to end: the official OpenAI SDK talks to the real
gateway binary, which serves it through plugins/cohere.wasm from a fake
Cohere v2 API (fake_cohere.py). Assertions cover both what the client gets
and what the upstream received."""

from __future__ import annotations

import base64
import json
import secrets

import openai
import pytest
from openai import OpenAI

from fake_cohere import RETRY_AFTER_SECONDS, FakeCohere, content_images, content_text, vector_for
from harness import Gateway, launch_gateway, require_built
from provider_helpers import CITY_WEATHER_TOOL as WEATHER_TOOL, CONVERSATION, fresh_client

KEY_VAR = "PORTICO_E2E_COHERE_KEY"
CHAT = "co-chat"
EMBED = "co-embed"
BAD_KEY = "co-bad-key"
RATE_LIMITED = "co-rate-limited"
UPSTREAM_500 = "co-upstream-500"
CHAT_MODEL = "command-a-03-2025"
EMBED_MODEL = "embed-v4.0"



@pytest.fixture(scope="module")
def cohere_key() -> str:
    return "co-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def fake_cohere(cohere_key: str):
    fake = FakeCohere(api_key=cohere_key).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def cohere_gateway(fake_cohere: FakeCohere, cohere_key: str, tmp_path_factory) -> Gateway:
    require_built("cohere")
    work = tmp_path_factory.mktemp("cohere-gateway")
    config = work / "portico.toml"

    def endpoint(name: str, model: str, api_key: str = "${" + KEY_VAR + "}") -> str:
        return (
            f'[[endpoints]]\nname = "{name}"\nprovider = "cohere"\nmodel = "{model}"\n'
            f'[endpoints.config]\napi_key = "{api_key}"\nbase_url = "{fake_cohere.base_url}"\n\n'
        )

    config.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(EMBED, EMBED_MODEL)
        + endpoint(BAD_KEY, CHAT_MODEL, api_key="co-wrong-key")
        + endpoint(RATE_LIMITED, "force-429")
        + endpoint(UPSTREAM_500, "force-500")
    )
    with launch_gateway(work, config, env={KEY_VAR: cohere_key}) as gw:
        yield gw


@pytest.fixture
def client(cohere_gateway: Gateway, fake_cohere: FakeCohere) -> OpenAI:
    return fresh_client(cohere_gateway, fake_cohere, api_key="client-key")


def assert_cohere_request(fake: FakeCohere, rec, path: str) -> dict:
    assert rec.method == "POST"
    assert rec.path == path
    assert rec.headers["authorization"] == f"Bearer {fake.api_key}"
    assert "client-key" not in json.dumps(rec.headers), "the client's key must not reach the upstream"
    assert rec.headers["content-type"].startswith("application/json")
    return rec.json


# -- chat -----------------------------------------------------------------------


def test_reasoning_effort_becomes_thinking(client: OpenAI, fake_cohere: FakeCohere):
    """A client's reasoning request reaches Cohere's reasoning models as
    `thinking`: on with the level's token budget, or off."""
    for effort, thinking in [("low", {"type": "enabled", "token_budget": 2048}), ("none", {"type": "disabled"})]:
        fake_cohere.reset()
        resp = client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], reasoning_effort=effort
        )
        assert resp.choices[0].message.content
        rec = fake_cohere.only_request()
        assert rec.response_status == 200
        assert rec.json["thinking"] == thinking


def test_chat_with_system_prompt_and_sampling(client: OpenAI, fake_cohere: FakeCohere):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=CONVERSATION,
        temperature=0.25,
        top_p=0.5,
        max_tokens=64,
        stop=["END"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.25,
    )
    rec = fake_cohere.only_request()
    sent = rec.response_json

    assert resp.choices[0].message.content == "Echo: Grüezi Zürich 👋"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == sent["usage"]["billed_units"]["input_tokens"]
    assert resp.usage.completion_tokens == sent["usage"]["billed_units"]["output_tokens"]

    body = assert_cohere_request(fake_cohere, rec, "/v2/chat")
    assert rec.headers["accept"] == "application/json"
    assert body["model"] == CHAT_MODEL
    assert body["messages"] == CONVERSATION
    assert (body["temperature"], body["p"], body["max_tokens"]) == (0.25, 0.5, 64)
    assert body["stop_sequences"] == ["END"]
    assert (body["seed"], body["presence_penalty"], body["frequency_penalty"]) == (7, 0.5, 0.25)
    assert "stream" not in body


def test_finish_reason_length(client: OpenAI, fake_cohere: FakeCohere):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "one two three four"}], max_tokens=3
    )
    assert resp.choices[0].message.content == "Echo: one two"
    assert resp.choices[0].finish_reason == "length"
    assert fake_cohere.only_request().response_json["finish_reason"] == "MAX_TOKENS"


def test_stream_with_usage(client: OpenAI, fake_cohere: FakeCohere):
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "tell me a story about Zürich 👋"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = fake_cohere.only_request()
    body = assert_cohere_request(fake_cohere, rec, "/v2/chat")
    assert body["stream"] is True
    assert rec.headers["accept"] == "text/event-stream"
    assert rec.stream_writes > 20, "the fake should have cut the stream into many writes"

    with_choices = [c for c in chunks if c.choices]
    pieces = [c.choices[0].delta.content for c in with_choices if c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: tell me a story about Zürich 👋"
    assert len(pieces) > 1
    assert [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason] == ["stop"]
    billed = rec.response_events[-1][1]["delta"]["usage"]["billed_units"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == billed["input_tokens"]
    assert chunks[-1].usage.completion_tokens == billed["output_tokens"]


# -- tools ----------------------------------------------------------------------


def test_tools_round_trip(client: OpenAI, fake_cohere: FakeCohere):
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.chat.completions.create(model=CHAT, messages=[question], tools=[WEATHER_TOOL])
    rec = fake_cohere.only_request()
    body = assert_cohere_request(fake_cohere, rec, "/v2/chat")
    assert body["tools"] == [WEATHER_TOOL]
    assert "tool_choice" not in body

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    upstream_call = rec.response_json["message"]["tool_calls"][0]
    assert call.id == upstream_call["id"]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Weather in Paris?"}

    fake_cohere.reset()
    second = client.chat.completions.create(
        model=CHAT,
        messages=[
            question,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "Tool result: 18C and sunny"
    assert second.choices[0].finish_reason == "stop"
    messages = fake_cohere.only_request().json["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Paris?"}
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"] == [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}


def test_streamed_tool_call(client: OpenAI, fake_cohere: FakeCohere):
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "Wetter in München?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
        )
    )
    body = fake_cohere.only_request().json
    assert body["tool_choice"] == "REQUIRED"
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].id and deltas[0].function.name == "get_weather"
    assert all(d.index == 0 for d in deltas)
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"city": "Wetter in München?"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_tool_choice_none(client: OpenAI, fake_cohere: FakeCohere):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "just talk"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert resp.choices[0].message.content == "Echo: just talk"
    assert fake_cohere.only_request().json["tool_choice"] == "NONE"


# -- vision ---------------------------------------------------------------------


def test_vision_images_are_forwarded(client: OpenAI, fake_cohere: FakeCohere):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(48))).decode()
    data_url = f"data:image/png;base64,{png}"
    web_url = "https://example.com/cat.jpg"
    resp = client.chat.completions.create(
        model=CHAT,
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
    content = fake_cohere.only_request().json["messages"][-1]["content"]
    assert content_images(content) == [data_url, web_url]
    assert content_text(content) == "What is in these?"


# -- embeddings -----------------------------------------------------------------


def test_embeddings(client: OpenAI, fake_cohere: FakeCohere):
    resp = client.embeddings.create(model=EMBED, input=["hello world", "portico"])
    rec = fake_cohere.only_request()
    body = assert_cohere_request(fake_cohere, rec, "/v2/embed")
    assert body == {
        "model": EMBED_MODEL,
        "texts": ["hello world", "portico"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert [d.embedding for d in resp.data] == [vector_for("hello world"), vector_for("portico")]
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.usage.prompt_tokens == rec.response_json["meta"]["billed_units"]["input_tokens"]


def test_embeddings_input_type_and_dimensions(client: OpenAI, fake_cohere: FakeCohere):
    resp = client.embeddings.create(
        model=EMBED, input="what is portico?", dimensions=256, extra_body={"input_type": "search_query"}
    )
    body = fake_cohere.only_request().json
    assert body["input_type"] == "search_query"
    assert body["output_dimension"] == 256
    assert resp.data[0].embedding == vector_for("what is portico?", 256)


# -- errors ---------------------------------------------------------------------


def test_rate_limit_is_rate_limit_error_with_retry_after(client: OpenAI, fake_cohere: FakeCohere):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    assert "Trial key" in e.value.message
    assert len(fake_cohere.requests) == 1
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=RATE_LIMITED, input="x")


def test_bad_key_is_authentication_error(client: OpenAI, fake_cohere: FakeCohere):
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=BAD_KEY, messages=[{"role": "user", "content": "x"}])
    assert "invalid api token" in e.value.message
    assert fake_cohere.only_request().headers["authorization"] == "Bearer co-wrong-key"


def test_upstream_500_is_bad_gateway(client: OpenAI, fake_cohere: FakeCohere):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model=UPSTREAM_500, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert "internal server error" in e.value.message
