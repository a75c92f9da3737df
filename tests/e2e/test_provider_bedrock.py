"""The bedrock plugin, end to end: the official OpenAI SDK talks to the real
gateway binary, which runs the real bedrock.wasm against a fake Bedrock
runtime (fake_bedrock.py). The fake recomputes every SigV4 signature
independently and answers streams as real binary event streams, so these
tests prove the signing (including the double-encoded `:` of model ids) and
the event-stream decoding, not only the JSON translation."""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pytest
from openai import OpenAI

from fake_bedrock import (
    COHERE_MODEL,
    DENIED_MODEL,
    GPT_OSS_MODEL,
    NOVA_2_MODEL,
    STREAM_THROTTLED_MODEL,
    THROTTLED_MODEL,
    TITAN_MODEL,
    FakeBedrock,
    blocks_text,
    vector_for,
)
from harness import Gateway, launch_gateway, require_built
from provider_helpers import (
    CLIENT_KEY,
    HELLO,
    TIME_TOOL,
    WEATHER_TOOL,
    anthropic_client,
    assert_client_key_not_sent,
    check_alive,
    fresh_client,
)

REGION = "us-west-2"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TEMP_ACCESS_KEY = "ASIAXAMPLETEMPKEY123"
TEMP_SECRET_KEY = "tEmPsEcReT+with/odd=chars"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="
ENV = {
    "PORTICO_E2E_AWS_KEY": ACCESS_KEY,
    "PORTICO_E2E_AWS_SECRET": SECRET_KEY,
    "PORTICO_E2E_AWS_TEMP_KEY": TEMP_ACCESS_KEY,
    "PORTICO_E2E_AWS_TEMP_SECRET": TEMP_SECRET_KEY,
    "PORTICO_E2E_AWS_SESSION_TOKEN": SESSION_TOKEN,
}

CHAT = "br-chat"
SESSION = "br-session"
WRONG_SECRET = "br-wrong-secret"
UNKNOWN_KEY = "br-unknown-key"
WRONG_REGION = "br-wrong-region"
THROTTLED = "br-throttled"
DENIED = "br-denied"
INVALID_MODEL = "br-invalid-model"
STREAM_THROTTLED = "br-stream-throttled"
TITAN = "br-titan"
COHERE = "br-cohere"
CHAT_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SESSION_MODEL = "amazon.nova-lite-v1:0"
NOVA_2 = "br-nova-2"
GPT_OSS = "br-gpt-oss"



@pytest.fixture(scope="module")
def fake():
    with FakeBedrock(REGION) as fake:
        fake.add_account(ACCESS_KEY, SECRET_KEY)
        fake.add_account(TEMP_ACCESS_KEY, TEMP_SECRET_KEY, SESSION_TOKEN)
        yield fake


@pytest.fixture(scope="module")
def bedrock_gateway(fake: FakeBedrock, tmp_path_factory):
    require_built("bedrock")
    work = tmp_path_factory.mktemp("bedrock-gateway")

    def endpoint(
        name: str,
        model: str,
        key: str = "${PORTICO_E2E_AWS_KEY}",
        secret: str = "${PORTICO_E2E_AWS_SECRET}",
        region: str = REGION,
        extra: str = "",
    ) -> str:
        return (
            "[[endpoints]]\n"
            f'name = "{name}"\n'
            'provider = "bedrock"\n'
            f'model = "{model}"\n'
            "[endpoints.config]\n"
            f'aws_access_key_id = "{key}"\n'
            f'aws_secret_access_key = "{secret}"\n'
            f'region = "{region}"\n'
            f'base_url = "{fake.base_url}"\n{extra}\n'
        )

    config = work / "portico.toml"
    config.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(
            SESSION,
            SESSION_MODEL,
            key="${PORTICO_E2E_AWS_TEMP_KEY}",
            secret="${PORTICO_E2E_AWS_TEMP_SECRET}",
            extra='aws_session_token = "${PORTICO_E2E_AWS_SESSION_TOKEN}"\n',
        )
        + endpoint(WRONG_SECRET, CHAT_MODEL, secret="not-the-secret")
        + endpoint(UNKNOWN_KEY, CHAT_MODEL, key="AKIAUNKNOWNKEY000000")
        + endpoint(WRONG_REGION, CHAT_MODEL, region="eu-west-1")
        + endpoint(THROTTLED, THROTTLED_MODEL)
        + endpoint(DENIED, DENIED_MODEL)
        + endpoint(INVALID_MODEL, "anthropic.claude-does-not-exist-v1:0")
        + endpoint(STREAM_THROTTLED, STREAM_THROTTLED_MODEL)
        + endpoint(NOVA_2, NOVA_2_MODEL)
        + endpoint(GPT_OSS, GPT_OSS_MODEL)
        + endpoint(TITAN, TITAN_MODEL)
        + endpoint(COHERE, COHERE_MODEL)
    )
    with launch_gateway(work, config, env=ENV) as gw:
        yield gw


@pytest.fixture
def client(bedrock_gateway: Gateway, fake: FakeBedrock) -> OpenAI:
    return fresh_client(bedrock_gateway, fake)


def assert_signed(rec, access_key: str = ACCESS_KEY) -> None:
    """The request passed the fake's independent SigV4 check."""
    assert rec.response_status == 200, rec.response_json
    auth = rec.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={access_key}/{rec.headers['x-amz-date'][:8]}/{REGION}/bedrock/aws4_request, ")
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert_client_key_not_sent(rec)


# -- chat ---------------------------------------------------------------------------


def test_chat_is_signed_with_the_double_encoded_model_path(client: OpenAI, fake: FakeBedrock):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=HELLO,
    )
    rec = fake.only_request()
    sent = rec.response_json
    assert resp.choices[0].message.content == "Echo: Say hello to Portico"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == sent["usage"]["inputTokens"]
    assert resp.usage.completion_tokens == sent["usage"]["outputTokens"]
    assert resp.usage.total_tokens == sent["usage"]["totalTokens"]

    assert rec.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert rec.model_id == CHAT_MODEL
    # What the fake signed over: the path encoded once more.
    assert rec.canonical_request.split("\n")[1] == "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
    assert_signed(rec)
    assert "x-amz-security-token" not in rec.headers
    assert rec.json == {
        "messages": [{"role": "user", "content": [{"text": "Say hello to Portico"}]}],
        "system": [{"text": "You are terse."}],
    }


def test_claude_token_counts_come_from_count_tokens(bedrock_gateway: Gateway, fake: FakeBedrock):
    """The Anthropic SDK's count_tokens reaches Bedrock's CountTokens for a
    Claude model, signed, with the Converse form of the request; a model
    Bedrock cannot count for answers a 400 in Anthropic's shape."""
    fake.reset()
    claude = anthropic_client(bedrock_gateway)
    counted = claude.messages.count_tokens(
        model=CHAT, system="You are terse.", messages=[{"role": "user", "content": "Count these words please"}]
    )
    rec = fake.only_request()
    assert rec.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/count-tokens"
    assert_signed(rec)
    assert rec.json == {
        "input": {
            "converse": {
                "messages": [{"role": "user", "content": [{"text": "Count these words please"}]}],
                "system": [{"text": "You are terse."}],
            }
        }
    }
    assert counted.input_tokens == rec.response_json["inputTokens"] == 3 + 4

    fake.reset()
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.count_tokens(model=SESSION, messages=[{"role": "user", "content": "x"}])
    assert "doesn't support counting tokens" in refused.value.message


def test_anthropic_clients_betas_reach_claude_in_the_model_fields(bedrock_gateway: Gateway, fake: FakeBedrock):
    """Claude on Bedrock takes an Anthropic client's betas (its
    anthropic-beta header) as `anthropic_beta` in the model-specific
    fields, for chats and token counts; other models get none."""
    fake.reset()
    claude = anthropic_client(bedrock_gateway)
    betas = ["token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14"]
    hi = [{"role": "user", "content": "beta on Bedrock"}]
    message = claude.beta.messages.create(model=CHAT, max_tokens=20, messages=hi, betas=betas)
    assert message.content[0].text == "Echo: beta on Bedrock"
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    assert rec.json["additionalModelRequestFields"] == {"anthropic_beta": betas}
    assert "anthropic-beta" not in rec.headers

    fake.reset()
    claude.beta.messages.count_tokens(model=CHAT, messages=hi, betas=betas[:1])
    rec = fake.only_request()
    # The SDK adds its own token-counting beta to the ones asked for.
    assert rec.json["input"]["converse"]["additionalModelRequestFields"] == {
        "anthropic_beta": [betas[0], "token-counting-2024-11-01"]
    }

    fake.reset()
    claude.beta.messages.create(model=SESSION, max_tokens=20, messages=hi, betas=betas)
    assert "additionalModelRequestFields" not in fake.only_request().json


def test_multi_turn_and_inference_config(client: OpenAI, fake: FakeBedrock):
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
    assert body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.25, "topP": 0.5, "stopSequences": ["END", "STOP"]}


def test_length_finish_reason(client: OpenAI, fake: FakeBedrock):
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "one two three four"}], max_tokens=3
    )
    assert resp.choices[0].message.content == "Echo: one two"
    assert resp.choices[0].finish_reason == "length"


def test_reasoning_effort_becomes_claude_thinking_only(client: OpenAI, fake: FakeBedrock):
    """Converse has no reasoning field: a Claude model gets Anthropic's
    `thinking` in additionalModelRequestFields (the budget below maxTokens,
    set with room for the answer when the client gave no limit); other
    families get nothing."""
    client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], reasoning_effort="low")
    rec = fake.only_request()
    assert rec.response_status == 200
    assert rec.json["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert rec.json["inferenceConfig"] == {"maxTokens": 2048 + 4096}
    assert_signed(rec)
    # Sampling Claude refuses beside thinking stays out; what it accepts goes.
    fake.reset()
    client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "hi"}],
        reasoning_effort="low",
        temperature=0.3,
        top_p=0.97,
    )
    rec = fake.only_request()
    assert rec.response_status == 200
    assert rec.json["inferenceConfig"] == {"maxTokens": 2048 + 4096, "topP": 0.97}
    assert rec.json["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    fake.reset()
    client.chat.completions.create(
        model=SESSION, messages=[{"role": "user", "content": "hi"}], reasoning_effort="low", temperature=0.3
    )
    rec = fake.only_request()
    assert rec.response_status == 200
    assert "additionalModelRequestFields" not in rec.json
    assert rec.json["inferenceConfig"] == {"temperature": 0.3}


def test_response_format_becomes_converse_structured_output(client: OpenAI, fake: FakeBedrock):
    """A json_schema response_format reaches Converse as structured output
    (outputConfig.textFormat, the schema as a JSON string), streamed or not;
    a plain JSON answer without a schema has no Converse equivalent."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "place", "description": "A city", "schema": schema},
    }
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Bern"}], response_format=response_format
    )
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    text_format = rec.json["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    json_schema = text_format["structure"]["jsonSchema"]
    assert (json_schema["name"], json_schema["description"]) == ("place", "A city")
    assert json.loads(json_schema["schema"]) == schema
    assert json.loads(resp.choices[0].message.content) == {"city": "Bern"}
    assert_signed(rec)

    fake.reset()
    stream = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Bern"}], response_format=response_format, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert json.loads(text) == {"city": "Bern"}
    assert "outputConfig" in fake.only_request().json

    # A plain JSON answer: Claude's JSON mode, a forced tool whose input is
    # the answer (the fake's forced call carries the text as {"input": ...}).
    fake.reset()
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Bern"}], response_format={"type": "json_object"}
    )
    rec = fake.only_request()
    assert rec.response_status == 200
    assert "outputConfig" not in rec.json
    name = rec.json["toolConfig"]["toolChoice"]["tool"]["name"]
    assert [t["toolSpec"]["name"] for t in rec.json["toolConfig"]["tools"]] == [name]
    assert json.loads(resp.choices[0].message.content) == {"input": "Bern"}
    assert resp.choices[0].finish_reason == "stop" and not resp.choices[0].message.tool_calls
    fake.reset()
    stream = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Thun"}], response_format={"type": "json_object"}, stream=True
    )
    chunks = [chunk for chunk in stream if chunk.choices]
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks)) == {"input": "Thun"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]


def test_nova_2_and_gpt_oss_get_a_reasoning_level(client: OpenAI, fake: FakeBedrock):
    """Nova 2 Lite takes reasoningConfig with a level (low, medium or high;
    at high without maxTokens or sampling, which it refuses there), and
    gpt-oss its reasoning_effort; reasoning turned off sends nothing."""
    hi = [{"role": "user", "content": "hi"}]
    for effort, level in [("minimal", "low"), ("medium", "medium")]:
        fake.reset()
        client.chat.completions.create(model=NOVA_2, messages=hi, reasoning_effort=effort, max_tokens=300, temperature=0.5)
        rec = fake.only_request()
        assert rec.response_status == 200, rec.response_json
        assert rec.json["additionalModelRequestFields"] == {
            "reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}
        }
        assert rec.json["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.5}
        assert_signed(rec)
    fake.reset()
    resp = client.chat.completions.create(model=NOVA_2, messages=hi, reasoning_effort="high", max_tokens=300, temperature=0.5)
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    assert rec.json["additionalModelRequestFields"]["reasoningConfig"]["maxReasoningEffort"] == "high"
    assert "inferenceConfig" not in rec.json
    assert resp.choices[0].message.content == "Echo: hi"
    assert resp.choices[0].message.reasoning_content == "[REDACTED]"
    fake.reset()
    resp = client.chat.completions.create(model=NOVA_2, messages=hi, reasoning_effort="none")
    assert "additionalModelRequestFields" not in fake.only_request().json
    assert getattr(resp.choices[0].message, "reasoning_content", None) is None

    fake.reset()
    resp = client.chat.completions.create(model=GPT_OSS, messages=hi, reasoning_effort="low")
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    assert rec.json["additionalModelRequestFields"] == {"reasoning_effort": "low"}
    assert resp.choices[0].message.reasoning_content == "Reasoning about: hi."
    assert resp.choices[0].message.content == "Echo: hi"


def test_streamed_reasoning_reaches_an_openai_client(client: OpenAI, fake: FakeBedrock):
    """The reasoningContent deltas of a binary event stream come out as
    reasoning_content deltas before the answer's text."""
    for model, reasoning in [(CHAT, "The user wrote: hi."), (GPT_OSS, "Reasoning about: hi.")]:
        fake.reset()
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], reasoning_effort="low", stream=True
        )
        thought, text, order = "", "", []
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if getattr(delta, "reasoning_content", None):
                thought += delta.reasoning_content
                order.append("reasoning")
            if delta.content:
                text += delta.content
                order.append("text")
        rec = fake.only_request()
        assert rec.path.endswith("/converse-stream")
        assert rec.response_status == 200, rec.response_json
        assert (thought, text) == (reasoning, "Echo: hi")
        assert order.index("text") > max(i for i, kind in enumerate(order) if kind == "reasoning")


def test_claude_thinking_round_trips_with_its_signature(bedrock_gateway: Gateway, fake: FakeBedrock):
    """An Anthropic client's extended thinking on Claude through Converse:
    the reasoningContent block comes back as a thinking block with Bedrock's
    signature, streamed or not, and replaying it sends the same text and
    signature back as reasoningContent."""
    fake.reset()
    check_alive(bedrock_gateway)
    claude = anthropic_client(bedrock_gateway)
    question = [{"role": "user", "content": "Paris"}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = claude.messages.create(model=CHAT, max_tokens=2048, thinking=thinking, messages=question)
    rec = fake.only_request()
    assert rec.json["additionalModelRequestFields"] == {"thinking": thinking}
    sent = rec.response_json["output"]["message"]["content"][0]["reasoningContent"]["reasoningText"]
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[0].signature) == (sent["text"], sent["signature"])
    assert message.content[1].text == "Echo: Paris"

    fake.reset()
    with claude.messages.stream(model=CHAT, max_tokens=2048, thinking=thinking, messages=question) as stream:
        streamed = stream.get_final_message()
    assert [block.type for block in streamed.content] == ["thinking", "text"]
    assert (streamed.content[0].thinking, streamed.content[0].signature) == (sent["text"], sent["signature"])
    assert streamed.content[1].text == "Echo: Paris"

    fake.reset()
    claude.messages.create(
        model=CHAT,
        max_tokens=2048,
        thinking=thinking,
        messages=question
        + [
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
            {"role": "user", "content": "And Rome?"},
        ],
    )
    rec = fake.only_request()
    assert rec.response_status == 200, rec.response_json
    assert rec.json["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": sent}},
        {"text": "Echo: Paris"},
    ]


def test_session_token_is_sent_and_signed(client: OpenAI, fake: FakeBedrock):
    resp = client.chat.completions.create(model=SESSION, messages=[{"role": "user", "content": "temporary"}])
    assert resp.choices[0].message.content == "Echo: temporary"
    rec = fake.only_request()
    assert rec.raw_path == "/model/amazon.nova-lite-v1%3A0/converse"
    assert rec.headers["x-amz-security-token"] == SESSION_TOKEN
    assert_signed(rec, TEMP_ACCESS_KEY)
    assert "x-amz-security-token" in rec.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


def test_vision_sends_image_bytes(client: OpenAI, fake: FakeBedrock):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 1 image(s). Echo: What is this?"
    content = fake.only_request().json["messages"][0]["content"]
    assert content == [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": png}}}]


def test_remote_image_urls_are_refused_before_the_upstream(client: OpenAI, fake: FakeBedrock):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=CHAT,
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}
            ],
        )
    assert "inline bytes" in str(info.value.message)
    assert fake.requests == []


# -- streaming ---------------------------------------------------------------------------


def test_stream_decodes_the_binary_event_stream(client: OpenAI, fake: FakeBedrock):
    text = "tell me about Zürich and 東京 👋"
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = fake.only_request()
    assert rec.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    assert rec.headers["accept"] == "application/vnd.amazon.eventstream"
    assert_signed(rec)

    content_chunks = [c for c in chunks if c.choices]
    pieces = [c.choices[0].delta.content for c in content_chunks if c.choices[0].delta.content]
    assert "".join(pieces) == f"Echo: {text}"
    assert len(pieces) > 1
    assert [c.choices[0].finish_reason for c in content_chunks if c.choices[0].finish_reason] == ["stop"]
    usage = rec.response_events[-1][1]["usage"]
    assert chunks[-1].usage.prompt_tokens == usage["inputTokens"]
    assert chunks[-1].usage.completion_tokens == usage["outputTokens"]


def test_streamed_tool_call(client: OpenAI, fake: FakeBedrock):
    chunks = list(
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Lisbon"}], tools=[WEATHER_TOOL], stream=True
        )
    )
    rec = fake.only_request()
    start = rec.response_events[1][1]["start"]["toolUse"]
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == start["toolUseId"]
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Lisbon"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_exception_inside_the_stream(client: OpenAI, fake: FakeBedrock):
    stream = client.chat.completions.create(
        model=STREAM_THROTTLED, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["Partial"], "events before the exception still arrive"
    assert "Too many tokens" in str(info.value.message)


# -- tools --------------------------------------------------------------------------------


def test_tool_call_round_trip(client: OpenAI, fake: FakeBedrock):
    messages = [{"role": "user", "content": "Paris"}]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    first = fake.only_request()
    assert first.json["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Current weather of a city",
                    "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},
                }
            },
            {
                "toolSpec": {
                    "name": "get_time",
                    "description": "Current time in a city",
                    "inputSchema": {"json": TIME_TOOL["function"]["parameters"]},
                }
            },
        ],
        "toolChoice": {"auto": {}},
    }
    sent = first.response_json["output"]["message"]["content"][0]["toolUse"]
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == sent["toolUseId"]
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
    assert msgs[1]["content"] == [{"toolUse": {"toolUseId": call.id, "name": "get_weather", "input": {"city": "Paris"}}}]
    assert msgs[2]["content"] == [{"toolResult": {"toolUseId": call.id, "content": [{"text": "18 degrees and sunny"}]}}]


def test_tool_choice_is_translated(client: OpenAI, fake: FakeBedrock):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Tokyo"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert fake.only_request().json["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    assert resp.choices[0].message.tool_calls[0].function.name == "get_time"

    fake.reset()
    client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert fake.only_request().json["toolConfig"]["toolChoice"] == {"any": {}}

    fake.reset()
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert "toolConfig" not in fake.only_request().json, "Converse has no 'none': the tools are left out"
    assert resp.choices[0].message.content == "Echo: Oslo"


# -- embeddings ---------------------------------------------------------------------------


def test_titan_embeddings(client: OpenAI, fake: FakeBedrock):
    resp = client.embeddings.create(model=TITAN, input="hello embedded world", dimensions=256)
    rec = fake.only_request()
    assert rec.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert_signed(rec)
    assert rec.json == {"inputText": "hello embedded world", "dimensions": 256}
    assert [d.embedding for d in resp.data] == [vector_for("hello embedded world", 256)]
    assert resp.usage.prompt_tokens == rec.response_json["inputTextTokenCount"]


def test_titan_takes_one_input_per_request(client: OpenAI, fake: FakeBedrock):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=TITAN, input=["one", "two"])
    assert "one input per request" in str(info.value.message)
    assert fake.requests == []


def test_cohere_embeddings_batch(client: OpenAI, fake: FakeBedrock):
    inputs = ["alpha", "beta gamma", "delta epsilon zeta"]
    resp = client.embeddings.create(model=COHERE, input=inputs)
    rec = fake.only_request()
    assert rec.raw_path == "/model/cohere.embed-english-v3/invoke"
    assert_signed(rec)
    assert rec.json == {"texts": inputs, "input_type": "search_document", "embedding_types": ["float"]}
    assert [d.embedding for d in resp.data] == [vector_for(t, 1024) for t in inputs]
    assert resp.usage.prompt_tokens == 6


# -- errors ---------------------------------------------------------------------------------


def test_throttling_is_a_rate_limit(client: OpenAI, fake: FakeBedrock):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=THROTTLED, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 429
    assert "Too many requests" in str(info.value.message)
    rec = fake.only_request()
    assert rec.response_status == 429
    assert rec.raw_path == "/model/anthropic.claude-throttled-v1%3A0/converse"


def test_throttling_on_a_stream(client: OpenAI, fake: FakeBedrock):
    with pytest.raises(openai.RateLimitError):
        list(client.chat.completions.create(model=THROTTLED, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert fake.only_request().raw_path.endswith("/converse-stream")


@pytest.mark.parametrize(
    ("endpoint", "error_type"),
    [
        (WRONG_SECRET, "InvalidSignatureException"),
        (UNKNOWN_KEY, "UnrecognizedClientException"),
        (WRONG_REGION, "InvalidSignatureException"),
    ],
)
def test_rejected_credentials_are_authentication_errors(client: OpenAI, fake: FakeBedrock, endpoint: str, error_type: str):
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=endpoint, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401
    rec = fake.only_request()
    assert rec.response_status == 403
    assert rec.response_json["message"] in str(info.value.message)
    assert SECRET_KEY not in str(info.value.message)


def test_access_denied_is_a_permission_error(client: OpenAI, fake: FakeBedrock):
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=DENIED, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 403
    assert "don't have access" in str(info.value.message)


def test_invalid_model_is_a_bad_request(client: OpenAI, fake: FakeBedrock):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=INVALID_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "model identifier is invalid" in str(info.value.message)
    assert fake.only_request().raw_path == "/model/anthropic.claude-does-not-exist-v1%3A0/converse"
