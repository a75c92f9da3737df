"""The OpenAI dialect of the gateway, driven by the official OpenAI SDK,
through the real binary and the real openai plugin, to the fake upstream."""

from __future__ import annotations

import base64
import json
import struct
import time

import openai
import pytest
import requests
from openai import OpenAI

from conftest import (
    BAD_KEY,
    CHAT,
    CHAT_MODEL,
    EMBED,
    EMBED_MODEL,
    RATE_LIMITED,
    UPSTREAM_400,
    UPSTREAM_500,
    UPSTREAM_DOWN,
    Gateway,
)
from fake_openai import RETRY_AFTER_SECONDS, SLOW_DELAY_SECONDS, SLOW_MARKER, FakeOpenAI, content_text, vector_for

CLIENT_KEY = "dummy"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client(gateway: Gateway) -> OpenAI:
    # max_retries=0: an error must surface as it came, not be retried away.
    return OpenAI(base_url=gateway.openai_base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)


def assert_upstream_auth(fake: FakeOpenAI, rec) -> None:
    """The upstream sees the endpoint's server-side key, never the client's."""
    assert rec.headers.get("authorization") == f"Bearer {fake.api_key}"
    for name, value in rec.headers.items():
        assert CLIENT_KEY not in value, f"client key leaked upstream in header {name}"


def upstream_messages(rec) -> list[dict]:
    return rec.json["messages"]


# -- chat ---------------------------------------------------------------------


def test_chat_completion(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to Portico"},
        ],
    )
    rec = fake_upstream.only_request()
    sent = rec.response_json

    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: Say hello to Portico"
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert resp.usage.prompt_tokens == sent["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == sent["usage"]["completion_tokens"]
    assert resp.usage.total_tokens == sent["usage"]["total_tokens"]
    assert resp.id

    assert rec.method == "POST"
    assert rec.path == "/v1/chat/completions"
    assert rec.headers.get("content-type", "").startswith("application/json")
    assert_upstream_auth(fake_upstream, rec)
    body = rec.json
    assert body["model"] == CHAT_MODEL, "the upstream must get the endpoint's model, not the endpoint name"
    assert not body.get("stream")
    msgs = upstream_messages(rec)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert content_text(msgs[0]["content"]) == "You are terse."
    assert content_text(msgs[1]["content"]) == "Say hello to Portico"


def test_chat_multi_turn_and_sampling_params(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "Rule one."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
        temperature=0.25,
        top_p=0.5,
        max_tokens=64,
        stop=["END"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        response_format={"type": "json_object"},
    )
    assert resp.choices[0].message.content == "Echo: second question"

    body = fake_upstream.only_request().json
    msgs = upstream_messages(fake_upstream.only_request())
    assert [(m["role"], content_text(m["content"])) for m in msgs] == [
        ("system", "Rule one."),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.5
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 64
    assert body["stop"] in (["END"], "END")
    assert body["seed"] == 7
    assert body["presence_penalty"] == 0.5
    assert body["frequency_penalty"] == 0.25
    assert body["response_format"] == {"type": "json_object"}


def test_chat_finish_reason_length(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "one two three four"}], max_tokens=3
    )
    assert resp.choices[0].message.content == "Echo: one two"
    assert resp.choices[0].finish_reason == "length"


def test_chat_content_parts_are_accepted(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "parts "}, {"type": "text", "text": "joined"}]}
        ],
    )
    assert resp.choices[0].message.content == "Echo: parts joined"


def test_vision_image_parts_are_forwarded(client: OpenAI, fake_upstream: FakeOpenAI):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(32))).decode()
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

    parts = upstream_messages(fake_upstream.only_request())[-1]["content"]
    assert isinstance(parts, list)
    assert [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"] == [data_url, web_url]
    assert content_text(parts) == "What is in these?"


# -- streaming ----------------------------------------------------------------


def test_stream_with_usage(client: OpenAI, fake_upstream: FakeOpenAI):
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "tell me a short story"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    rec = fake_upstream.only_request()

    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "all chunks of a completion share its id"
    content_chunks = [c for c in chunks if c.choices]
    pieces = [c.choices[0].delta.content for c in content_chunks if c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: tell me a short story"
    assert len(pieces) > 1, "the answer should arrive in several deltas, not one"
    assert content_chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in content_chunks if c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert content_chunks[-1].choices[0].finish_reason == "stop", "finish_reason comes after all content"

    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [], "with include_usage, usage comes last in a chunk without choices"
    sent_usage = rec.response_events[-1]["usage"]
    assert usage_chunk.usage.prompt_tokens == sent_usage["prompt_tokens"]
    assert usage_chunk.usage.completion_tokens == sent_usage["completion_tokens"]
    assert usage_chunk.usage.total_tokens == sent_usage["total_tokens"]

    assert rec.path == "/v1/chat/completions"
    assert_upstream_auth(fake_upstream, rec)
    assert rec.json["stream"] is True
    assert rec.json["model"] == CHAT_MODEL
    assert rec.json.get("stream_options", {}).get("include_usage") is True


def test_stream_without_include_usage_has_no_usage_chunk(client: OpenAI, fake_upstream: FakeOpenAI):
    # Many clients read chunk.choices[0] unconditionally: a chunk without
    # choices that the client did not ask for would break them.
    chunks = list(
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi there"}], stream=True)
    )
    assert all(c.choices for c in chunks), "a chunk without choices although include_usage was not asked"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: hi there"
    assert fake_upstream.only_request().json["stream"] is True


def test_stream_is_incremental(client: OpenAI, fake_upstream: FakeOpenAI):
    """Deltas reach the client as the upstream sends them, not at the end."""
    start = time.monotonic()
    arrivals = []
    stream = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": f"{SLOW_MARKER} a b c d"}], stream=True
    )
    text = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
            text += chunk.choices[0].delta.content
    total = time.monotonic() - start
    assert text == f"Echo: {SLOW_MARKER} a b c d"
    # The fake spaces its ~9 events SLOW_DELAY_SECONDS apart.
    assert total >= 5 * SLOW_DELAY_SECONDS
    assert arrivals[0] < total - 3 * SLOW_DELAY_SECONDS, f"first delta at {arrivals[0]:.2f}s of {total:.2f}s"


def test_stream_raw_sse_format(gateway: Gateway, fake_upstream: FakeOpenAI):
    r = requests.post(
        f"{gateway.openai_base_url}/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "raw"}], "stream": True},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        stream=True,
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data_lines = [line for line in r.iter_lines(decode_unicode=True) if line.startswith("data:")]
    assert data_lines[-1].strip() == "data: [DONE]"
    for line in data_lines[:-1]:
        json.loads(line[len("data:") :])


# -- tools --------------------------------------------------------------------


def test_tool_call_round_trip(client: OpenAI, fake_upstream: FakeOpenAI):
    messages = [{"role": "user", "content": "Paris"}]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    first = fake_upstream.only_request()
    sent_call = first.response_json["choices"][0]["message"]["tool_calls"][0]

    tools_up = first.json["tools"]
    assert [t["function"]["name"] for t in tools_up] == ["get_weather", "get_time"]
    assert tools_up[0]["type"] == "function"
    assert tools_up[0]["function"]["description"] == WEATHER_TOOL["function"]["description"]
    assert tools_up[0]["function"]["parameters"] == WEATHER_TOOL["function"]["parameters"]

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id == sent_call["id"]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    # Second turn: the client sends the call and its result back.
    fake_upstream.reset()
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    resp2 = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    assert resp2.choices[0].message.content == "Tool result: 18 degrees and sunny"
    assert resp2.choices[0].finish_reason == "stop"

    msgs = upstream_messages(fake_upstream.only_request())
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    up_call = msgs[1]["tool_calls"][0]
    assert up_call["id"] == call.id
    assert up_call["type"] == "function"
    assert up_call["function"]["name"] == "get_weather"
    assert json.loads(up_call["function"]["arguments"]) == {"city": "Paris"}
    assert msgs[2]["tool_call_id"] == call.id
    assert content_text(msgs[2]["content"]) == "18 degrees and sunny"


def test_forced_tool_choice_is_forwarded(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Tokyo"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert fake_upstream.only_request().json["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert resp.choices[0].message.tool_calls[0].function.name == "get_time"


def test_tool_choice_none_is_forwarded(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert fake_upstream.only_request().json["tool_choice"] == "none"
    assert resp.choices[0].message.content == "Echo: Oslo"
    assert not resp.choices[0].message.tool_calls


def test_streamed_tool_call(client: OpenAI, fake_upstream: FakeOpenAI):
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Lisbon"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    rec = fake_upstream.only_request()
    call_id = rec.response_events[0]["choices"][0]["delta"]["tool_calls"][0]["id"]

    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas, "no tool call deltas"
    assert all(d.index == 0 for d in deltas)
    assert deltas[0].id == call_id
    assert deltas[0].function.name == "get_weather"
    assert all(d.id in (None, call_id) for d in deltas[1:])
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Lisbon"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == rec.response_events[-1]["usage"]["total_tokens"]
    assert rec.json["tools"][0]["function"]["name"] == "get_weather"


# -- embeddings -----------------------------------------------------------------


def test_embeddings_default_base64(client: OpenAI, fake_upstream: FakeOpenAI):
    inputs = ["alpha", "beta gamma", "delta epsilon zeta"]
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    resp = client.embeddings.create(model=EMBED, input=inputs)
    rec = fake_upstream.only_request()

    assert [d.embedding for d in resp.data] == [vector_for(t) for t in inputs]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert resp.usage.prompt_tokens == rec.response_json["usage"]["prompt_tokens"]

    assert rec.path == "/v1/embeddings"
    assert_upstream_auth(fake_upstream, rec)
    assert rec.json["model"] == EMBED_MODEL
    assert rec.json["input"] == inputs
    assert rec.json.get("encoding_format", "float") == "float", "the gateway asks the upstream for floats"


def test_embeddings_raw_base64_is_little_endian_float32(gateway: Gateway, fake_upstream: FakeOpenAI):
    r = requests.post(
        f"{gateway.openai_base_url}/embeddings",
        json={"model": EMBED, "input": "alpha", "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    emb = body["data"][0]["embedding"]
    assert isinstance(emb, str)
    raw = base64.b64decode(emb)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector_for("alpha")


def test_embeddings_float_and_dimensions(client: OpenAI, fake_upstream: FakeOpenAI):
    resp = client.embeddings.create(model=EMBED, input="alpha", encoding_format="float", dimensions=3)
    assert len(resp.data) == 1
    assert resp.data[0].embedding == vector_for("alpha", 3)
    body = fake_upstream.only_request().json
    assert body["dimensions"] == 3
    assert body["input"] in ("alpha", ["alpha"])


# -- models -------------------------------------------------------------------


def test_models_list_contains_endpoints(client: OpenAI, fake_upstream: FakeOpenAI):
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert CHAT in ids and EMBED in ids
    assert all(m.object == "model" for m in models)
    assert fake_upstream.requests == [], "listing endpoints needs no upstream call"


# -- errors -------------------------------------------------------------------


def test_unknown_endpoint_is_not_found(client: OpenAI, fake_upstream: FakeOpenAI):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-endpoint", messages=[{"role": "user", "content": "x"}])
    assert "no-such-endpoint" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-endpoint", messages=[{"role": "user", "content": "x"}], stream=True
        )
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-endpoint", input="x")
    assert fake_upstream.requests == []


def test_error_shape_for_bad_json_and_unknown_endpoint(gateway: Gateway):
    url = f"{gateway.openai_base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}

    r = requests.post(url, data=b'{"model": "e2e-chat", "messages": [', headers=headers, timeout=30)
    assert r.status_code == 400
    err = r.json()["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert err["message"]

    unknown = {"model": "no-such-endpoint", "messages": [{"role": "user", "content": "x"}]}
    r = requests.post(url, json=unknown, headers=headers, timeout=30)
    assert r.status_code == 404
    assert {"message", "type", "param", "code"} <= set(r.json()["error"])


def test_upstream_401_is_authentication_error(client: OpenAI, fake_upstream: FakeOpenAI):
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=BAD_KEY, messages=[{"role": "user", "content": "x"}])
    assert "Incorrect API key" in e.value.message
    rec = fake_upstream.only_request()
    assert rec.headers["authorization"] == "Bearer sk-wrong-key"


def test_upstream_429_is_rate_limit_error_with_retry_after(client: OpenAI, fake_upstream: FakeOpenAI):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    assert "Rate limit reached" in e.value.message
    assert len(fake_upstream.requests) == 1, "the gateway must not retry a 429 by itself"


def test_upstream_429_on_stream_is_rate_limit_error(client: OpenAI, fake_upstream: FakeOpenAI):
    # Nothing was streamed yet, so the error is an HTTP status, not an event.
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}], stream=True
        )


def test_upstream_429_on_embeddings(client: OpenAI, fake_upstream: FakeOpenAI):
    # The rate-limited endpoint's model is force-429 for every operation.
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=RATE_LIMITED, input="x")


def test_upstream_400_is_bad_request(client: OpenAI, fake_upstream: FakeOpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=UPSTREAM_400, messages=[{"role": "user", "content": "x"}])
    assert "temperature" in e.value.message


def test_upstream_5xx_is_bad_gateway(client: OpenAI, fake_upstream: FakeOpenAI):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model=UPSTREAM_500, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502


def test_upstream_unreachable_is_bad_gateway(client: OpenAI, fake_upstream: FakeOpenAI):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model=UPSTREAM_DOWN, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert fake_upstream.requests == []
