"""The ollama plugin end to end: the official OpenAI SDK talks to the real
gateway binary, which serves it through plugins/ollama.wasm from a fake
Ollama server (fake_ollama.py). Assertions cover both what the client gets
and what the upstream received."""

from __future__ import annotations

import base64
import json
import secrets

import openai
import pytest
from openai import OpenAI

from fake_ollama import PROXY_PREFIX, FakeOllama, vector_for
from harness import Gateway, launch_gateway, require_built
from provider_helpers import CITY_WEATHER_TOOL as WEATHER_TOOL, CONVERSATION, fresh_client

KEY_VAR = "PORTICO_E2E_OLLAMA_PROXY_KEY"
CHAT = "ol-chat"
PROXIED = "ol-proxied"
EMBED = "ol-embed"
MISSING = "ol-missing"
OSS = "ol-gpt-oss"
CHAT_MODEL = "llama3.2"
EMBED_MODEL = "nomic-embed-text"



@pytest.fixture(scope="module")
def proxy_key() -> str:
    return "ol-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def fake_ollama(proxy_key: str):
    fake = FakeOllama(proxy_key=proxy_key).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def ollama_gateway(fake_ollama: FakeOllama, tmp_path_factory, proxy_key: str) -> Gateway:
    require_built("ollama")
    work = tmp_path_factory.mktemp("ollama-gateway")
    config = work / "portico.toml"

    def endpoint(name: str, model: str, base_url: str = fake_ollama.base_url, api_key: str | None = None) -> str:
        text = f'[[endpoints]]\nname = "{name}"\nprovider = "ollama"\nmodel = "{model}"\n'
        text += f'[endpoints.config]\nbase_url = "{base_url}"\n'
        if api_key is not None:
            text += f'api_key = "{api_key}"\n'
        return text + "\n"

    config.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(PROXIED, CHAT_MODEL, base_url=fake_ollama.base_url + PROXY_PREFIX, api_key="${" + KEY_VAR + "}")
        + endpoint(EMBED, EMBED_MODEL)
        + endpoint(MISSING, "missing-model")
        + endpoint(OSS, "gpt-oss:20b")
    )
    with launch_gateway(work, config, env={KEY_VAR: proxy_key}) as gw:
        yield gw


@pytest.fixture
def client(ollama_gateway: Gateway, fake_ollama: FakeOllama) -> OpenAI:
    return fresh_client(ollama_gateway, fake_ollama, api_key="client-key")


def assert_plain_request(rec, path: str) -> dict:
    assert rec.method == "POST"
    assert rec.path == path
    assert "authorization" not in rec.headers, "a plain Ollama endpoint sends no credentials"
    assert rec.headers["content-type"].startswith("application/json")
    return rec.json


# -- chat -----------------------------------------------------------------------


def test_reasoning_effort_turns_think_on_or_off(client: OpenAI, fake_ollama: FakeOllama):
    """Ollama takes `think` on or off for every thinking model (levels only
    for some), so a client's reasoning request is sent as on or off."""
    for effort, think in [("high", True), ("none", False)]:
        fake_ollama.reset()
        resp = client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], reasoning_effort=effort
        )
        assert resp.choices[0].message.content
        rec = fake_ollama.only_request()
        assert rec.response_status == 200
        assert rec.json["think"] is think
    fake_ollama.reset()
    client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    assert "think" not in fake_ollama.only_request().json


def test_gpt_oss_gets_a_think_level(client: OpenAI, fake_ollama: FakeOllama):
    """gpt-oss ignores think on/off and takes a level (low, medium, high)
    instead; it cannot turn reasoning off, so "none" sends nothing."""
    hi = [{"role": "user", "content": "hi"}]
    for effort, think in [("minimal", "low"), ("medium", "medium"), ("xhigh", "high")]:
        fake_ollama.reset()
        resp = client.chat.completions.create(model=OSS, messages=hi, reasoning_effort=effort)
        assert resp.choices[0].message.content
        rec = fake_ollama.only_request()
        assert rec.response_status == 200, rec.response_json
        assert rec.json["model"] == "gpt-oss:20b"
        assert rec.json["think"] == think
    fake_ollama.reset()
    client.chat.completions.create(model=OSS, messages=hi, reasoning_effort="none")
    assert "think" not in fake_ollama.only_request().json


def test_chat_with_system_prompt_and_options(client: OpenAI, fake_ollama: FakeOllama):
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
    rec = fake_ollama.only_request()
    assert resp.choices[0].message.content == "Echo: Grüezi Zürich 👋"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == rec.response_json["prompt_eval_count"]
    assert resp.usage.completion_tokens == rec.response_json["eval_count"]

    body = assert_plain_request(rec, "/api/chat")
    assert body["model"] == CHAT_MODEL
    assert body["stream"] is False, "Ollama streams unless told otherwise"
    assert body["messages"] == CONVERSATION
    assert body["options"] == {
        "temperature": 0.25,
        "top_p": 0.5,
        "num_predict": 64,
        "stop": ["END"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
    }


def test_finish_reason_length(client: OpenAI, fake_ollama: FakeOllama):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "one two three four"}], max_tokens=3
    )
    assert resp.choices[0].message.content == "Echo: one two"
    assert resp.choices[0].finish_reason == "length"
    assert fake_ollama.only_request().json["options"]["num_predict"] == 3


def test_stream_with_usage(client: OpenAI, fake_ollama: FakeOllama):
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "a story about Zürich 👋 please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = fake_ollama.only_request()
    body = assert_plain_request(rec, "/api/chat")
    assert body["stream"] is True
    assert rec.stream_writes > 10, "the fake should have cut the stream into many writes"

    with_choices = [c for c in chunks if c.choices]
    pieces = [c.choices[0].delta.content for c in with_choices if c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: a story about Zürich 👋 please"
    assert len(pieces) > 1
    assert [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason] == ["stop"]
    final = rec.response_lines[-1]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == final["prompt_eval_count"]
    assert chunks[-1].usage.completion_tokens == final["eval_count"]


def test_proxied_server_gets_bearer_key(client: OpenAI, fake_ollama: FakeOllama, proxy_key: str):
    resp = client.chat.completions.create(model=PROXIED, messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "Echo: hi"
    rec = fake_ollama.only_request()
    assert rec.path == f"{PROXY_PREFIX}/api/chat"
    assert rec.headers["authorization"] == f"Bearer {proxy_key}"


# -- tools ----------------------------------------------------------------------


def test_tools_round_trip(client: OpenAI, fake_ollama: FakeOllama):
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.chat.completions.create(model=CHAT, messages=[question], tools=[WEATHER_TOOL])
    body = fake_ollama.only_request().json
    assert body["tools"] == [WEATHER_TOOL]

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_"), "Ollama gives no ids: the plugin makes one"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Weather in Paris?"}

    fake_ollama.reset()
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
    assert second.choices[0].message.content == "Tool result: 18C and sunny (from get_weather)"
    messages = fake_ollama.only_request().json["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Weather in Paris?"}}}],
    }
    assert messages[2] == {"role": "tool", "content": "18C and sunny", "tool_name": "get_weather"}


def test_streamed_tool_call(client: OpenAI, fake_ollama: FakeOllama):
    chunks = list(
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Wetter in München?"}], tools=[WEATHER_TOOL], stream=True
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Wetter in München?"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_tool_choice_none_offers_no_tools(client: OpenAI, fake_ollama: FakeOllama):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "just talk"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert resp.choices[0].message.content == "Echo: just talk"
    assert "tools" not in fake_ollama.only_request().json


# -- vision ---------------------------------------------------------------------


def test_vision_inline_images_are_sent_as_base64(client: OpenAI, fake_ollama: FakeOllama):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(48))).decode()
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(range(16))).decode()
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}"}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 2 image(s). Echo: What is in these?"
    sent = fake_ollama.only_request().json["messages"][-1]
    assert sent == {"role": "user", "content": "What is in these?", "images": [png, jpeg]}


def test_vision_image_url_is_a_clear_400(client: OpenAI, fake_ollama: FakeOllama):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=CHAT,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ],
        )
    assert "Ollama needs inline images" in e.value.message
    assert fake_ollama.requests == [], "nothing may reach the upstream"


# -- embeddings -----------------------------------------------------------------


def test_embeddings(client: OpenAI, fake_ollama: FakeOllama):
    resp = client.embeddings.create(model=EMBED, input=["hello world", "portico"])
    rec = fake_ollama.only_request()
    body = assert_plain_request(rec, "/api/embed")
    assert body == {"model": EMBED_MODEL, "input": ["hello world", "portico"]}
    assert [d.embedding for d in resp.data] == [vector_for("hello world"), vector_for("portico")]
    assert resp.usage.prompt_tokens == rec.response_json["prompt_eval_count"]

    fake_ollama.reset()
    resp = client.embeddings.create(model=EMBED, input="short", dimensions=3)
    assert fake_ollama.only_request().json == {"model": EMBED_MODEL, "input": ["short"], "dimensions": 3}
    assert resp.data[0].embedding == vector_for("short", 3)


# -- errors ---------------------------------------------------------------------


def test_missing_model_is_not_found(client: OpenAI, fake_ollama: FakeOllama):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model=MISSING, messages=[{"role": "user", "content": "x"}])
    assert 'model "missing-model" not found, try pulling it first' in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MISSING, messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=MISSING, input="x")
    assert len(fake_ollama.requests) == 3
