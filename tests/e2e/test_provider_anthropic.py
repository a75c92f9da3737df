"""The anthropic plugin, end to end: the official OpenAI SDK talks to the
real gateway binary, which runs the real anthropic.wasm against a fake
Anthropic Messages API (fake_anthropic.py). Every test checks what reached
the upstream (headers, Anthropic-shaped body), not only the answer."""

from __future__ import annotations

import base64
import json
import secrets

import anthropic
import openai
import pydantic
import pytest
from google import genai
from google.genai import types as genai_types
from openai import OpenAI

from fake_anthropic import (
    API_VERSION,
    RETRY_AFTER_SECONDS,
    FakeAnthropic,
    blocks,
    blocks_text,
    input_tokens_of,
    thinking_signature,
)
from harness import Gateway, launch_gateway, require_built
from provider_helpers import (
    CLIENT_KEY,
    HELLO,
    TIME_TOOL,
    WEATHER_TOOL,
    anthropic_client,
    assert_client_key_not_sent,
    fresh_client,
)

KEY_VAR = "PORTICO_E2E_ANTHROPIC_KEY"

CHAT = "an-chat"
CONFIGURED = "an-configured-max"
BAD_KEY = "an-bad-key"
RATE_LIMITED = "an-rate-limited"
OVERLOADED = "an-overloaded"
FAILS_MID_STREAM = "an-fails-mid-stream"
CHAT_MODEL = "claude-sonnet-4-5-20250929"
CATALOG_MAX_OUTPUT = 64000  # plugins/anthropic/models.toml for CHAT_MODEL



@pytest.fixture(scope="module")
def anthropic_key() -> str:
    return "sk-ant-api03-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def fake(anthropic_key: str):
    with FakeAnthropic(anthropic_key) as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic_gateway(fake: FakeAnthropic, anthropic_key: str, tmp_path_factory):
    require_built("anthropic")
    work = tmp_path_factory.mktemp("anthropic-gateway")

    def endpoint(name: str, model: str, api_key: str = "${" + KEY_VAR + "}", extra: str = "") -> str:
        return (
            "[[endpoints]]\n"
            f'name = "{name}"\n'
            'provider = "anthropic"\n'
            f'model = "{model}"\n'
            "[endpoints.config]\n"
            f'api_key = "{api_key}"\n'
            f'base_url = "{fake.base_url}"\n{extra}\n'
        )

    config = work / "portico.toml"
    config.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(CONFIGURED, "claude-model-not-in-catalog", extra='max_tokens = "321"\n')
        + endpoint(BAD_KEY, CHAT_MODEL, api_key="sk-ant-wrong")
        + endpoint(RATE_LIMITED, "force-429")
        + endpoint(OVERLOADED, "force-529")
        + endpoint(FAILS_MID_STREAM, "force-overloaded-mid-stream")
    )
    with launch_gateway(work, config, env={KEY_VAR: anthropic_key}) as gw:
        yield gw


@pytest.fixture
def client(anthropic_gateway: Gateway, fake: FakeAnthropic) -> OpenAI:
    return fresh_client(anthropic_gateway, fake)


def assert_anthropic_headers(fake: FakeAnthropic, rec) -> None:
    assert rec.method == "POST"
    assert rec.path == "/v1/messages"
    assert rec.headers.get("x-api-key") == fake.api_key
    assert rec.headers.get("anthropic-version") == API_VERSION
    assert rec.headers.get("content-type", "").startswith("application/json")
    assert "authorization" not in rec.headers, "Anthropic takes x-api-key, not a bearer token"
    assert_client_key_not_sent(rec)


# -- chat ---------------------------------------------------------------------------


def test_chat(client: OpenAI, fake: FakeAnthropic):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=HELLO,
    )
    rec = fake.only_request()
    sent = rec.response_json
    assert resp.choices[0].message.content == "Echo: Say hello to Portico"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == sent["usage"]["input_tokens"]
    assert resp.usage.completion_tokens == sent["usage"]["output_tokens"]
    assert resp.usage.total_tokens == sent["usage"]["input_tokens"] + sent["usage"]["output_tokens"]

    assert_anthropic_headers(fake, rec)
    body = rec.json
    assert body["model"] == CHAT_MODEL
    assert body["max_tokens"] == CATALOG_MAX_OUTPUT, "without a client max_tokens, the catalog's max output is sent"
    assert body["system"] == "You are terse."
    assert [(m["role"], blocks_text(m["content"])) for m in body["messages"]] == [("user", "Say hello to Portico")]
    assert "stream" not in body


def test_multi_turn_sampling_and_stop_sequences(client: OpenAI, fake: FakeAnthropic):
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
        stop=["END", "STOP"],
    )
    assert resp.choices[0].message.content == "Echo: second question"
    body = fake.only_request().json
    assert [(m["role"], blocks_text(m["content"])) for m in body["messages"]] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert body["system"] == "Rule one."
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 64
    assert body["stop_sequences"] == ["END", "STOP"]


def test_consecutive_user_turns_are_merged(client: OpenAI, fake: FakeAnthropic):
    # Anthropic rejects two user turns in a row; the plugin merges them.
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "part one"}, {"role": "user", "content": "part two"}],
    )
    assert resp.choices[0].message.content == "Echo: part onepart two"
    msgs = fake.only_request().json["messages"]
    assert [m["role"] for m in msgs] == ["user"]
    assert [b["text"] for b in blocks(msgs[0]["content"])] == ["part one", "part two"]


def test_max_tokens_length_and_endpoint_default(client: OpenAI, fake: FakeAnthropic):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "one two three four"}], max_tokens=3
    )
    assert resp.choices[0].message.content == "Echo: one two"
    assert resp.choices[0].finish_reason == "length"

    fake.reset()
    client.chat.completions.create(model=CONFIGURED, messages=[{"role": "user", "content": "hi"}])
    body = fake.only_request().json
    assert body["max_tokens"] == 321, "the endpoint's max_tokens config is the default"
    assert body["model"] == "claude-model-not-in-catalog"


def test_vision(client: OpenAI, fake: FakeAnthropic):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(32))).decode()
    web_url = "https://example.com/cat.jpg"
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    {"type": "image_url", "image_url": {"url": web_url}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 2 image(s). Echo: What is in these?"
    content = fake.only_request().json["messages"][0]["content"]
    images = [b for b in content if b["type"] == "image"]
    assert images == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "url", "url": web_url}},
    ]


# -- streaming ---------------------------------------------------------------------------


def test_stream(client: OpenAI, fake: FakeAnthropic):
    text = "tell me a story about Zürich and 東京 👋"
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = fake.only_request()
    assert_anthropic_headers(fake, rec)
    assert rec.json["stream"] is True
    assert rec.headers.get("accept") == "text/event-stream"

    content_chunks = [c for c in chunks if c.choices]
    pieces = [c.choices[0].delta.content for c in content_chunks if c.choices[0].delta.content]
    assert "".join(pieces) == f"Echo: {text}"
    assert len(pieces) > 1
    assert [c.choices[0].finish_reason for c in content_chunks if c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    start = rec.response_events[0][1]["message"]["usage"]
    delta = rec.response_events[-2][1]["usage"]
    assert usage.prompt_tokens == start["input_tokens"]
    assert usage.completion_tokens == delta["output_tokens"]
    assert [name for name, _ in rec.response_events][:3] == ["message_start", "content_block_start", "ping"]


def test_streamed_tool_call(client: OpenAI, fake: FakeAnthropic):
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "Lisbon"}],
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = fake.only_request()
    tool_block = rec.response_events[1][1]["content_block"]
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == tool_block["id"]
    assert deltas[0].function.name == "get_weather"
    assert all(d.index == 0 for d in deltas)
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Lisbon"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None
    assert rec.json["tools"][0]["name"] == "get_weather"


def test_streamed_thinking_keeps_its_signature_for_the_next_turn(anthropic_gateway: Gateway, fake: FakeAnthropic):
    """Extended thinking with a tool call, streamed to the official Anthropic
    SDK: the thinking block's signature reaches the client, so the next turn
    can replay that thinking, which Anthropic verifies (and requires before
    a tool result while thinking is on)."""
    fake.reset()
    client = anthropic_client(anthropic_gateway)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    tool = {
        "name": "get_weather",
        "description": "Current weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    messages = [{"role": "user", "content": "Zürich"}]
    with client.messages.stream(model=CHAT, max_tokens=2048, thinking=thinking, tools=[tool], messages=messages) as stream:
        first = stream.get_final_message()
    rec = fake.only_request()
    assert rec.json["thinking"] == thinking
    assert rec.response_events[1][1]["content_block"]["type"] == "thinking"
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    sent = "The user wrote: Zürich. I should answer."
    assert first.content[0].thinking == sent
    assert first.content[0].signature == thinking_signature(sent)
    assert first.stop_reason == "tool_use"

    fake.reset()
    call = first.content[1]
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees"}]},
    ]
    with client.messages.stream(model=CHAT, max_tokens=2048, thinking=thinking, tools=[tool], messages=messages) as stream:
        second = stream.get_final_message()
    replayed = fake.only_request()
    assert replayed.response_status == 200
    assert blocks(replayed.json["messages"][1]["content"])[0] == {
        "type": "thinking",
        "thinking": sent,
        "signature": thinking_signature(sent),
    }
    assert second.content[-1].text == "Tool result: 18 degrees"
    # The second turn's own thinking is signed too.
    assert second.content[0].signature == thinking_signature(second.content[0].thinking)


def test_gemini_thinking_config_reaches_claude_and_thoughts_come_back(anthropic_gateway: Gateway, fake: FakeAnthropic):
    """A google-genai client's thinkingConfig reaches Claude as extended
    thinking and the thinking comes back as a thought part. Anthropic's
    signature is not base64, which the SDK would fail to decode as
    thoughtSignature bytes, so it stays out of the Gemini answer, streamed
    or not. Sampling options Anthropic refuses beside thinking stay out."""
    fake.reset()
    client = genai.Client(api_key="dummy", http_options={"base_url": anthropic_gateway.gemini_base_url})
    config = genai_types.GenerateContentConfig(
        max_output_tokens=4096,
        temperature=0.2,
        top_k=5,
        thinking_config=genai_types.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
    )
    response = client.models.generate_content(model=CHAT, contents="Bern", config=config)
    rec = fake.only_request()
    assert rec.response_status == 200
    assert rec.json["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert rec.json["max_tokens"] == 4096
    # Anthropic refuses these beside thinking; Gemini takes them together.
    assert "temperature" not in rec.json and "top_k" not in rec.json
    parts = response.candidates[0].content.parts
    thought = "The user wrote: Bern. I should answer."
    assert [(part.thought, part.text) for part in parts][0] == (True, thought)
    assert not parts[0].thought_signature
    assert parts[-1].text and not parts[-1].thought
    assert response.text == parts[-1].text

    fake.reset()
    chunks = list(client.models.generate_content_stream(model=CHAT, contents="Bern", config=config))
    streamed = fake.only_request()
    assert streamed.json["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    thoughts = "".join(p.text for c in chunks for p in c.candidates[0].content.parts or [] if p.thought)
    assert thoughts == thought
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP


def test_openai_reasoning_effort_becomes_extended_thinking(client: OpenAI, fake: FakeAnthropic):
    """An OpenAI client's reasoning_effort reaches Anthropic as extended
    thinking (the level's budget, kept below max_tokens), the thinking comes
    back as reasoning_content, and the tool-result turn that follows, which
    an OpenAI client cannot replay with signed thinking, goes without
    thinking: Anthropic refuses it otherwise (the fake does, like the API)."""
    messages = [{"role": "user", "content": "Paris"}]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low")
    first = fake.only_request()
    assert first.response_status == 200
    assert first.json["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert first.json["max_tokens"] == CATALOG_MAX_OUTPUT
    assert "reasoning_effort" not in first.json
    message = resp.choices[0].message
    assert message.reasoning_content == "The user wrote: Paris. I should answer."
    assert resp.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]

    fake.reset()
    messages += [
        {"role": "assistant", "content": message.content, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low")
    second = fake.only_request()
    assert second.response_status == 200
    assert "thinking" not in second.json
    assert resp.choices[0].message.content == "Tool result: 18 degrees"

    # Sampling Anthropic refuses beside thinking stays out, unless there is
    # no thinking after all (no room for it below the limit).
    for limit, thinking, sampling in [
        (None, {"type": "enabled", "budget_tokens": 2048}, {"top_p": 0.96}),
        (1024, None, {"temperature": 0.4, "top_p": 0.96}),
    ]:
        fake.reset()
        client.chat.completions.create(
            model=CHAT,
            messages=HELLO,
            reasoning_effort="low",
            temperature=0.4,
            top_p=0.96,
            **({"max_completion_tokens": limit} if limit else {}),
        )
        sent = fake.only_request()
        assert sent.response_status == 200, sent.response_json
        assert sent.json.get("thinking") == thinking
        assert {k: sent.json[k] for k in ("temperature", "top_p", "top_k") if k in sent.json} == sampling

    # The client's limit stays; the budget goes below it, or, with no room
    # for Anthropic's minimum of 1024, there is no thinking.
    for limit, thinking in [(5000, {"type": "enabled", "budget_tokens": 4999}), (1024, None)]:
        fake.reset()
        client.chat.completions.create(model=CHAT, messages=HELLO, reasoning_effort="high", max_completion_tokens=limit)
        sent = fake.only_request()
        assert sent.response_status == 200
        assert sent.json["max_tokens"] == limit
        assert sent.json.get("thinking") == thinking


class Place(pydantic.BaseModel):
    city: str
    population: int
    coastal: bool


PLACE_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def test_response_format_becomes_structured_output(client: OpenAI, fake: FakeAnthropic):
    """An OpenAI client's json_schema response_format reaches Claude as
    structured output (output_config.format), and the answer parses into
    the client's own type with the SDK's parse helper. A plain JSON answer
    without a schema (json_object), which Claude has no field for, comes
    through a forced tool taking any object, whose input is the answer."""
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Bern"}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "strict": True, "schema": PLACE_SCHEMA}},
    )
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    assert rec.json["output_config"] == {"format": {"type": "json_schema", "schema": PLACE_SCHEMA}}
    assert "response_format" not in rec.json
    assert json.loads(resp.choices[0].message.content) == {"city": "Bern", "population": 1}

    fake.reset()
    parsed = client.chat.completions.parse(model=CHAT, messages=[{"role": "user", "content": "Lausanne"}], response_format=Place)
    sent = fake.only_request().json["output_config"]["format"]
    assert sent["type"] == "json_schema"
    assert set(sent["schema"]["properties"]) == {"city", "population", "coastal"}
    assert parsed.choices[0].message.parsed == Place(city="Lausanne", population=1, coastal=True)

    fake.reset()
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Zug"}], response_format={"type": "json_object"}
    )
    rec = fake.only_request()
    assert rec.response_status == 200
    assert "output_config" not in rec.json and "response_format" not in rec.json
    (tool,) = rec.json["tools"]
    assert tool["input_schema"] == {"type": "object"}
    assert rec.json["tool_choice"] == {"type": "tool", "name": tool["name"]}
    # The fake's forced call carries the user's text as {"input": ...}.
    assert rec.response_json["content"][0]["type"] == "tool_use"
    assert json.loads(resp.choices[0].message.content) == {"input": "Zug"}
    assert resp.choices[0].finish_reason == "stop" and not resp.choices[0].message.tool_calls

    fake.reset()
    chunks = list(
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Chur"}], response_format={"type": "json_object"}, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"input": "Chur"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


def test_anthropic_clients_output_config_goes_as_sent(anthropic_gateway: Gateway, fake: FakeAnthropic):
    """An Anthropic client's output_config (structured output with the
    SDK's parse helper, effort) reaches an Anthropic upstream unchanged;
    a malformed one is a 400 in Anthropic's error shape, naming the field,
    before any upstream call."""
    client = anthropic.Anthropic(api_key="dummy", base_url=anthropic_gateway.anthropic_base_url)
    fake.reset()
    parsed = client.messages.parse(
        model=CHAT,
        max_tokens=200,
        messages=[{"role": "user", "content": "Geneva"}],
        output_format=Place,
        output_config={"effort": "low"},
    )
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    sent_config = rec.json["output_config"]
    assert sent_config["effort"] == "low"
    assert sent_config["format"]["type"] == "json_schema"
    assert set(sent_config["format"]["schema"]["properties"]) == {"city", "population", "coastal"}
    assert parsed.parsed_output == Place(city="Geneva", population=1, coastal=True)

    fake.reset()
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(
            model=CHAT,
            max_tokens=200,
            messages=[{"role": "user", "content": "Geneva"}],
            output_config={"format": {"type": "json_object"}},
        )
    assert error.value.body["error"]["type"] == "invalid_request_error"
    assert "output_config.format.type" in error.value.body["error"]["message"]
    assert fake.requests == []


def test_anthropic_clients_betas_reach_anthropic_in_the_header(anthropic_gateway: Gateway, fake: FakeAnthropic):
    """The Anthropic SDK's betas (its anthropic-beta header, as Claude Code
    sends it) reach Anthropic as that header, for messages, streams and
    token counts, with the beta's fields; without the beta, Anthropic
    refuses the field as it would a direct call. A header that names no
    beta is a 400 before any upstream call."""
    client = anthropic.Anthropic(api_key="dummy", base_url=anthropic_gateway.anthropic_base_url, max_retries=0)
    edits = {"edits": [{"type": "clear_tool_uses_20250919"}]}
    betas = ["context-management-2025-06-27", "interleaved-thinking-2025-05-14"]
    hi = [{"role": "user", "content": "hi"}]
    fake.reset()
    message = client.beta.messages.create(model=CHAT, max_tokens=50, messages=hi, betas=betas, context_management=edits)
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    assert rec.headers["anthropic-beta"] == ",".join(betas)
    assert rec.json["context_management"] == edits
    assert not {"anthropic_beta", "betas"} & set(rec.json)
    assert message.content[0].text == "Echo: hi"

    fake.reset()
    with client.beta.messages.stream(model=CHAT, max_tokens=50, messages=hi, betas=betas[:1], context_management=edits) as stream:
        assert "".join(stream.text_stream) == "Echo: hi"
    assert fake.only_request().headers["anthropic-beta"] == betas[0]

    fake.reset()
    counted = client.beta.messages.count_tokens(model=CHAT, messages=hi, betas=betas[:1], context_management=edits)
    rec = fake.only_request()
    # The SDK adds its own token-counting beta to the ones asked for.
    assert rec.path == "/v1/messages/count_tokens"
    assert rec.headers["anthropic-beta"] == f"{betas[0]},token-counting-2024-11-01"
    assert rec.json["context_management"] == edits
    assert counted.input_tokens == rec.response_json["input_tokens"]

    fake.reset()
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=CHAT, max_tokens=50, messages=hi, extra_body={"context_management": edits})
    assert error.value.body["error"]["message"] == "context_management: Extra inputs are not permitted"
    assert "anthropic-beta" not in fake.only_request().headers

    fake.reset()
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model=CHAT, max_tokens=50, messages=hi, extra_headers={"anthropic-beta": "no spaces please"})
    assert "anthropic-beta" in error.value.body["error"]["message"]
    assert fake.requests == []


# -- tools ---------------------------------------------------------------------------------


def test_tool_call_round_trip(client: OpenAI, fake: FakeAnthropic):
    messages = [{"role": "user", "content": "Paris"}]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    first = fake.only_request()
    tools_up = first.json["tools"]
    assert tools_up == [
        {
            "name": "get_weather",
            "description": "Current weather of a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        {
            "name": "get_time",
            "description": "Current time in a city",
            "input_schema": TIME_TOOL["function"]["parameters"],
        },
    ]
    sent_call = first.response_json["content"][0]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == sent_call["id"]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    fake.reset()
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    resp2 = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    assert resp2.choices[0].message.content == "Tool result: 18 degrees and sunny"
    assert resp2.choices[0].finish_reason == "stop"

    msgs = fake.only_request().json["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert blocks(msgs[1]["content"]) == [{"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}]
    assert blocks(msgs[2]["content"]) == [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}]


def test_tool_choice_is_translated(client: OpenAI, fake: FakeAnthropic):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Tokyo"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert fake.only_request().json["tool_choice"] == {"type": "tool", "name": "get_time"}
    assert resp.choices[0].message.tool_calls[0].function.name == "get_time"

    fake.reset()
    client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert fake.only_request().json["tool_choice"] == {"type": "any"}

    fake.reset()
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert fake.only_request().json["tool_choice"] == {"type": "none"}
    assert resp.choices[0].message.content == "Echo: Oslo"


# -- errors and unsupported operations ---------------------------------------------------


def test_anthropic_counts_the_tokens_of_a_messages_request(anthropic_gateway: Gateway, fake: FakeAnthropic):
    """messages.count_tokens reaches Anthropic's own count_tokens with the
    fields it takes (no max_tokens), the endpoint's model and the real key;
    a google-genai client's countTokens is counted there too."""
    fake.reset()
    claude = anthropic_client(anthropic_gateway)
    tool = {"name": "get_time", "description": "Time in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    counted = claude.messages.count_tokens(
        model=CHAT,
        system="Answer in one short sentence.",
        tools=[tool],
        messages=[
            {"role": "user", "content": "What time is it"},
            {"role": "assistant", "content": "Where are you?"},
            {"role": "user", "content": "In Lisbon, Portugal"},
        ],
    )
    rec = fake.only_request()
    assert (rec.method, rec.path, rec.response_status) == ("POST", "/v1/messages/count_tokens", 200)
    assert rec.headers.get("x-api-key") == fake.api_key
    assert rec.headers.get("anthropic-version") == API_VERSION
    assert_client_key_not_sent(rec)
    assert rec.json["model"] == CHAT_MODEL
    assert rec.json["system"] == "Answer in one short sentence."
    assert rec.json["tools"] == [tool]
    assert "max_tokens" not in rec.json and "stream" not in rec.json
    assert counted.input_tokens == input_tokens_of(rec.json) == 5 + 4 + 3 + 3

    fake.reset()
    gemini = genai.Client(api_key="dummy", http_options={"base_url": anthropic_gateway.gemini_base_url})
    google = gemini.models.count_tokens(model=CHAT, contents="How many words are here")
    rec = fake.only_request()
    assert rec.path == "/v1/messages/count_tokens"
    assert [(m["role"], blocks_text(m["content"])) for m in rec.json["messages"]] == [("user", "How many words are here")]
    assert google.total_tokens == 5
    gemini.close()


def test_responses_input_tokens_are_counted_by_anthropic(client: OpenAI, fake: FakeAnthropic):
    """The OpenAI SDK's responses.input_tokens.count reaches Anthropic's
    count_tokens as the Responses request would have gone, stored
    conversation (previous_response_id) included."""
    fake.reset()
    counted = client.responses.input_tokens.count(
        model=CHAT,
        instructions="Answer in one short sentence.",
        input=[{"role": "user", "content": "What time is it in Lisbon"}],
    )
    rec = fake.only_request()
    assert (rec.method, rec.path, rec.response_status) == ("POST", "/v1/messages/count_tokens", 200)
    assert rec.headers.get("x-api-key") == fake.api_key
    assert_client_key_not_sent(rec)
    assert rec.json["model"] == CHAT_MODEL
    assert rec.json["system"] == "Answer in one short sentence."
    assert [(m["role"], blocks_text(m["content"])) for m in rec.json["messages"]] == [
        ("user", "What time is it in Lisbon")
    ]
    assert "max_tokens" not in rec.json
    assert (counted.object, counted.input_tokens) == ("response.input_tokens", 5 + 6)

    first = client.responses.create(model=CHAT, input="Say hello")
    fake.reset()
    counted = client.responses.input_tokens.count(model=CHAT, previous_response_id=first.id, input="And goodbye")
    rec = fake.only_request()
    assert [(m["role"], blocks_text(m["content"])) for m in rec.json["messages"]] == [
        ("user", "Say hello"),
        ("assistant", first.output_text),
        ("user", "And goodbye"),
    ]
    assert counted.input_tokens == input_tokens_of(rec.json)

    # Without `input`, the stored conversation alone is counted.
    fake.reset()
    counted = client.responses.input_tokens.count(model=CHAT, previous_response_id=first.id)
    rec = fake.only_request()
    assert [(m["role"], blocks_text(m["content"])) for m in rec.json["messages"]] == [
        ("user", "Say hello"),
        ("assistant", first.output_text),
    ]
    assert counted.input_tokens == input_tokens_of(rec.json)

    fake.reset()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.input_tokens.count(model=CHAT, conversation="conv_123", input="x")
    assert "'conversation' is not supported" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.input_tokens.count(model=CHAT, instructions="Nothing else.")
    assert "'input' is required unless 'previous_response_id'" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model=CHAT, previous_response_id="resp_unknown", input="x")
    assert fake.requests == []


def test_rate_limit_with_retry_after(client: OpenAI, fake: FakeAnthropic):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "hi"}])
    err = info.value
    assert err.status_code == 429
    assert err.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    assert "rate limit" in str(err.message)
    assert fake.only_request().response_status == 429


def test_rate_limit_on_a_stream(client: OpenAI, fake: FakeAnthropic):
    with pytest.raises(openai.RateLimitError) as info:
        list(client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert info.value.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    assert fake.only_request().json["stream"] is True


def test_an_error_after_streamed_text_reaches_the_client_after_that_text(
    anthropic_gateway: Gateway, client: OpenAI, fake: FakeAnthropic
):
    """The upstream sends its text and then an `error` event in one write:
    the gateway decodes them together and loses neither. The client gets
    every text delta, then the error, through both dialects."""
    text = "Zürich in winter"
    pieces: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model=FAILS_MID_STREAM, messages=[{"role": "user", "content": text}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == f"Echo: {text}"
    assert "Overloaded" in str(info.value.message)
    rec = fake.only_request()
    assert rec.json["stream"] is True
    assert [name for name, _ in rec.response_events][-2:] == ["content_block_delta", "error"]

    fake.reset()
    native = anthropic_client(anthropic_gateway)
    pieces = []
    with pytest.raises(anthropic.APIStatusError) as native_info:
        with native.messages.stream(
            model=FAILS_MID_STREAM, max_tokens=256, messages=[{"role": "user", "content": text}]
        ) as stream:
            for delta in stream.text_stream:
                pieces.append(delta)
    assert "".join(pieces) == f"Echo: {text}"
    assert "Overloaded" in str(native_info.value.message)
    assert fake.only_request().json["stream"] is True


def test_bad_key_is_an_authentication_error(client: OpenAI, fake: FakeAnthropic):
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=BAD_KEY, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401
    assert "invalid x-api-key" in str(info.value.message)
    assert fake.only_request().headers["x-api-key"] == "sk-ant-wrong"


def test_overloaded(client: OpenAI, fake: FakeAnthropic):
    # Anthropic's 529 overloaded_error is the neutral `overloaded` kind; the
    # OpenAI dialect answers it with a 5xx (503, or Anthropic's own 529),
    # which the OpenAI SDK raises as InternalServerError.
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=OVERLOADED, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code in (503, 529)
    assert "Overloaded" in str(info.value.message)
    assert fake.only_request().response_status == 529


def test_embeddings_are_not_offered(client: OpenAI, fake: FakeAnthropic):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=CHAT, input="hello")
    assert "embeddings" in str(info.value.message)
    assert fake.requests == [], "nothing reaches the upstream"
