"""The fake upstream, exercised directly with the official OpenAI SDK.

These prove the fake speaks the protocol the SDK expects, so a failure in
the gateway tests is the gateway's, not the fake's.
"""

from __future__ import annotations

import json

import openai
import pytest
import requests
from openai import OpenAI

from fake_openai import RETRY_AFTER_SECONDS, FakeOpenAI, vector_for

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def direct(fake_upstream: FakeOpenAI) -> OpenAI:
    return OpenAI(base_url=fake_upstream.base_url, api_key=fake_upstream.api_key, max_retries=0, timeout=10)


def test_chat(direct: OpenAI, fake_upstream: FakeOpenAI):
    resp = direct.chat.completions.create(
        model="gpt-fake-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
    )
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (4, 3, 7)
    rec = fake_upstream.only_request()
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {fake_upstream.api_key}"
    assert rec.json["messages"][1] == {"role": "user", "content": "hello there"}


def test_chat_length_limit(direct: OpenAI):
    resp = direct.chat.completions.create(
        model="gpt-fake-mini", messages=[{"role": "user", "content": "one two three"}], max_tokens=2
    )
    assert resp.choices[0].message.content == "Echo: one"
    assert resp.choices[0].finish_reason == "length"


def test_stream_with_usage(direct: OpenAI, fake_upstream: FakeOpenAI):
    stream = direct.chat.completions.create(
        model="gpt-fake-mini",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 3 + 4
    assert fake_upstream.only_request().json["stream"] is True


def test_stream_without_usage_has_no_usage_chunk(direct: OpenAI):
    chunks = list(
        direct.chat.completions.create(
            model="gpt-fake-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_tool_call_and_streamed_tool_call(direct: OpenAI):
    msgs = [{"role": "user", "content": "Paris"}]
    resp = direct.chat.completions.create(model="gpt-fake-mini", messages=msgs, tools=[WEATHER_TOOL])
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    chunks = list(
        direct.chat.completions.create(model="gpt-fake-mini", messages=msgs, tools=[WEATHER_TOOL], stream=True)
    )
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert len(deltas) > 2, "arguments should arrive in several deltas"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings_base64_default_and_float(direct: OpenAI, fake_upstream: FakeOpenAI):
    resp = direct.embeddings.create(model="text-embedding-fake", input=["alpha", "beta gamma"])
    assert fake_upstream.only_request().json["encoding_format"] == "base64"
    assert [d.embedding for d in resp.data] == [vector_for("alpha"), vector_for("beta gamma")]

    fake_upstream.reset()
    resp = direct.embeddings.create(model="text-embedding-fake", input="alpha", encoding_format="float", dimensions=3)
    assert fake_upstream.only_request().json["encoding_format"] == "float"
    assert resp.data[0].embedding == vector_for("alpha", 3)
    assert resp.usage.prompt_tokens == 1


def test_models(direct: OpenAI):
    assert "gpt-fake-mini" in [m.id for m in direct.models.list()]


def test_errors(direct: OpenAI, fake_upstream: FakeOpenAI):
    wrong = OpenAI(base_url=fake_upstream.base_url, api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.chat.completions.create(model="gpt-fake-mini", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_api_key"

    with pytest.raises(openai.RateLimitError) as e:
        direct.chat.completions.create(model="force-429", messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert e.value.code == "rate_limit_exceeded"

    with pytest.raises(openai.InternalServerError):
        direct.chat.completions.create(model="force-500", messages=[{"role": "user", "content": "x"}])

    r = requests.post(
        f"{fake_upstream.base_url}/chat/completions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {fake_upstream.api_key}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
