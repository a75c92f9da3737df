"""The gemini plugin, end to end: the official OpenAI SDK talks to the real
gateway binary, which runs the real gemini.wasm against a fake Gemini API
(fake_gemini.py) that validates the requests and answers in the real
protocol. Assertions cover both what the client got and what the upstream
received."""

from __future__ import annotations

import base64
import json
import secrets

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from openai import OpenAI

from fake_gemini import IMAGE_PNG, SKIP_SIGNATURE, RETRY_DELAY_SECONDS, FakeGemini, call_signature, parts_text, vector_for
from harness import Gateway, launch_gateway, require_built
from provider_helpers import (
    CLIENT_KEY,
    HELLO,
    TIME_TOOL,
    WEATHER_TOOL,
    assert_client_key_not_sent,
    check_alive,
    fresh_client,
)

KEY_VAR = "PORTICO_E2E_GEMINI_KEY"

CHAT = "gm-chat"
EMBED = "gm-embed"
BAD_KEY = "gm-bad-key"
RATE_LIMITED = "gm-rate-limited"
MISSING = "gm-missing"
SIGNING = "gm-3"  # a Gemini 3 model: signs its calls and checks them on replay
PRO_25 = "gm-25-pro"  # thinks always; takes a budget
FLASH_3 = "gm-3-flash"
IMAGE = "gm-image"  # an image model: answers text and a PNG
IMAGE_3 = "gm-3-image"  # Gemini 3's: signs the image
CHAT_MODEL = "gemini-2.5-flash"
EMBED_MODEL = "gemini-embedding-001"



@pytest.fixture(scope="module")
def api_key() -> str:
    return "AIza" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def fake(api_key: str):
    with FakeGemini(api_key) as fake:
        yield fake


@pytest.fixture(scope="module")
def gemini_gateway(fake: FakeGemini, api_key: str, tmp_path_factory):
    require_built("gemini")
    work = tmp_path_factory.mktemp("gemini-gateway")

    def endpoint(name: str, model: str, key: str = "${" + KEY_VAR + "}") -> str:
        return (
            "[[endpoints]]\n"
            f'name = "{name}"\n'
            'provider = "gemini"\n'
            f'model = "{model}"\n'
            "[endpoints.config]\n"
            f'api_key = "{key}"\n'
            f'base_url = "{fake.base_url}"\n\n'
        )

    config = work / "portico.toml"
    config.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(EMBED, EMBED_MODEL)
        + endpoint(BAD_KEY, CHAT_MODEL, key="AIza-wrong-key")
        + endpoint(RATE_LIMITED, "force-429")
        + endpoint(MISSING, "force-404")
        + endpoint(SIGNING, "gemini-3-pro-preview")
        + endpoint(PRO_25, "gemini-2.5-pro")
        + endpoint(FLASH_3, "gemini-3-flash-preview")
        + endpoint(IMAGE, "gemini-2.5-flash-image")
        + endpoint(IMAGE_3, "gemini-3-pro-image-preview")
    )
    with launch_gateway(work, config, env={KEY_VAR: api_key}) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(fake: FakeGemini, gemini_gateway: Gateway):
    fake.reset()
    check_alive(gemini_gateway)
    yield


@pytest.fixture
def client(gemini_gateway: Gateway) -> OpenAI:
    return fresh_client(gemini_gateway)


def assert_upstream_auth(fake: FakeGemini, rec) -> None:
    assert rec.headers.get("x-goog-api-key") == fake.api_key
    assert "authorization" not in rec.headers
    assert "key=" not in rec.query, "the key must not travel in the URL"
    assert_client_key_not_sent(rec)


# -- chat ---------------------------------------------------------------------------


def test_chat(client: OpenAI, fake: FakeGemini):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=HELLO,
    )
    rec = fake.only_request()
    sent = rec.response_json

    assert resp.choices[0].message.content == "Echo: Say hello to Portico"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == sent["usageMetadata"]["promptTokenCount"]
    assert resp.usage.completion_tokens == sent["usageMetadata"]["candidatesTokenCount"]
    assert resp.usage.total_tokens == sent["usageMetadata"]["totalTokenCount"]

    assert rec.method == "POST"
    assert rec.path == f"/v1beta/models/{CHAT_MODEL}:generateContent"
    assert rec.query == ""
    assert rec.headers["content-type"].startswith("application/json")
    assert_upstream_auth(fake, rec)
    body = rec.json
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello to Portico"}]}]
    assert "model" not in body, "the model travels in the URL"


def test_multi_turn_sampling_and_length(client: OpenAI, fake: FakeGemini):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question with several words"},
        ],
        temperature=0.25,
        top_p=0.5,
        max_tokens=3,
        stop=["END"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.25,
    )
    assert resp.choices[0].message.content == "Echo: second question"
    assert resp.choices[0].finish_reason == "length"

    body = fake.only_request().json
    assert [(c["role"], parts_text(c["parts"])) for c in body["contents"]] == [
        ("user", "first question"),
        ("model", "first answer"),
        ("user", "second question with several words"),
    ]
    assert body["generationConfig"] == {
        "temperature": 0.25,
        "topP": 0.5,
        "maxOutputTokens": 3,
        "stopSequences": ["END"],
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
    }


def test_stream_with_usage(client: OpenAI, fake: FakeGemini):
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "tell me about Zürich ☀ in a few words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    rec = fake.only_request()

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: tell me about Zürich ☀ in a few words"
    assert len(pieces) > 1, "the answer should arrive in several deltas"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    last_usage = rec.response_events[-1]["usageMetadata"]
    assert chunks[-1].usage.prompt_tokens == last_usage["promptTokenCount"]
    assert chunks[-1].usage.completion_tokens == last_usage["candidatesTokenCount"]

    assert rec.path == f"/v1beta/models/{CHAT_MODEL}:streamGenerateContent"
    assert rec.query_params == {"alt": ["sse"]}
    assert rec.headers.get("accept") == "text/event-stream"
    assert_upstream_auth(fake, rec)
    assert len(rec.response_events) > 2


# -- tools -------------------------------------------------------------------------------


def test_tool_call_round_trip(client: OpenAI, fake: FakeGemini):
    messages = [{"role": "user", "content": "Paris"}]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    first = fake.only_request()

    decls = first.json["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == ["get_weather", "get_time"]
    assert decls[0]["description"] == "Current weather of a city"
    params = decls[0]["parameters"]
    assert params["type"] == "OBJECT"
    assert params["properties"]["city"]["type"] == "STRING"
    assert params["required"] == ["city"]

    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id, "Gemini gives no call id; the gateway must make one"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    sent_call = first.response_json["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert json.loads(call.function.arguments) == sent_call["args"]

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

    contents = fake.only_request().json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_call = contents[1]["parts"][0]
    assert model_call["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    response_part = contents[2]["parts"][0]
    assert response_part == {"functionResponse": {"name": "get_weather", "response": {"result": "18 degrees and sunny"}}}


def test_forced_tool_choice(client: OpenAI, fake: FakeGemini):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Tokyo"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert fake.only_request().json["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    }
    assert resp.choices[0].message.tool_calls[0].function.name == "get_time"


def test_streamed_tool_call(client: OpenAI, fake: FakeGemini):
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
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Lisbon"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage.total_tokens == rec.response_events[-1]["usageMetadata"]["totalTokenCount"]
    assert rec.path.endswith(":streamGenerateContent")


@pytest.mark.parametrize("thoughts", [False, True], ids=["call-only", "thoughts-then-call"])
def test_streamed_call_signature_reaches_an_anthropic_client_and_comes_back(
    gemini_gateway: Gateway, fake: FakeGemini, thoughts: bool
):
    """Gemini 3 signs its function calls and checks the signature when the
    call is replayed. Streamed to the official Anthropic SDK, the signature
    arrives as a signed (empty) thinking block before the tool_use, as in
    a whole answer; with thinking on, Gemini 3 streams unsigned thought
    summaries first, which stay a thinking block of their own. Replayed,
    the signature goes back on the call it came with."""
    claude = anthropic.Anthropic(base_url=gemini_gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
    tool = {
        "name": "get_weather",
        "description": "Current weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    options = {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096} if thoughts else {"max_tokens": 512}
    messages = [{"role": "user", "content": "Oslo"}]
    with claude.messages.stream(model=SIGNING, tools=[tool], messages=messages, **options) as stream:
        first = stream.get_final_message()
    rec = fake.only_request()
    assert rec.path.endswith("/gemini-3-pro-preview:streamGenerateContent")
    sent = [p for e in rec.response_events for p in e["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert len(sent) == 1 and sent[0]["thoughtSignature"] == call_signature(sent[0]["functionCall"])
    summaries = first.content[:-2]
    if thoughts:
        assert [(block.type, block.thinking, block.signature) for block in summaries] == [("thinking", "Thinking about: Oslo", "")]
    else:
        assert summaries == []
    signed, call = first.content[-2:]
    assert (signed.type, signed.thinking, signed.signature) == ("thinking", "", sent[0]["thoughtSignature"])
    assert call.type == "tool_use" and call.input == {"city": "Oslo"}
    assert first.stop_reason == "tool_use"

    fake.reset()
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4 degrees"}]},
    ]
    with claude.messages.stream(model=SIGNING, tools=[tool], messages=messages, **options) as stream:
        second = stream.get_final_message()
    replayed = fake.only_request()
    assert replayed.response_status == 200
    assert replayed.json["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": sent[0]["thoughtSignature"]}],
    }
    assert second.content[-1].text == "Tool result: 4 degrees"


WEATHER_DECLARATION = genai_types.FunctionDeclaration(
    name="get_weather",
    description="Current weather of a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.mark.parametrize("thoughts", [False, True], ids=["call-only", "thoughts-then-call"])
def test_streamed_signatures_reach_a_gemini_client_and_come_back_on_their_part(
    gemini_gateway: Gateway, fake: FakeGemini, thoughts: bool
):
    """google-genai streaming from Gemini 3: the signature of the call
    reaches the client on the call's part, after the unsigned thought
    summaries when thoughts are shown, and the client's history replays
    it upstream as it came, not Google's skip value."""
    gemini = genai.Client(api_key="dummy", http_options={"base_url": gemini_gateway.gemini_base_url})
    config = genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(function_declarations=[WEATHER_DECLARATION])],
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=genai_types.ThinkingConfig(include_thoughts=True) if thoughts else None,
    )
    history = [genai_types.Content(role="user", parts=[genai_types.Part(text="Oslo")])]
    chunks = list(gemini.models.generate_content_stream(model=SIGNING, contents=history, config=config))
    sent = fake.only_request().response_events
    signed = [p for e in sent for p in e["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert len(signed) == 1 and signed[0]["thoughtSignature"] == call_signature(signed[0]["functionCall"])
    parts = [part for chunk in chunks for part in chunk.candidates[0].content.parts]
    thought_parts = [part for part in parts if part.thought]
    assert "".join(part.text for part in thought_parts) == ("Thinking about: Oslo" if thoughts else "")
    assert all(not part.thought_signature for part in thought_parts)
    [call] = [part for part in parts if part.function_call]
    assert call.function_call.args == {"city": "Oslo"}
    assert call.thought_signature == base64.b64decode(signed[0]["thoughtSignature"])

    fake.reset()
    history += [
        genai_types.Content(role="model", parts=parts),
        genai_types.Content(
            role="user",
            parts=[genai_types.Part.from_function_response(name="get_weather", response={"result": "4 degrees"})],
        ),
    ]
    replayed = list(gemini.models.generate_content_stream(model=SIGNING, contents=history, config=config))
    rec = fake.only_request()
    assert rec.response_status == 200
    model_turn = rec.json["contents"][1]
    assert model_turn["role"] == "model"
    calls = [part for part in model_turn["parts"] if "functionCall" in part]
    assert calls == [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": signed[0]["thoughtSignature"]}]
    assert "".join(chunk.text or "" for chunk in replayed) == "Tool result: 4 degrees"


@pytest.mark.parametrize("endpoint_name", [IMAGE, IMAGE_3])
def test_generated_images_reach_a_gemini_client_streamed_or_not(gemini_gateway: Gateway, fake: FakeGemini, endpoint_name: str):
    """An image model's picture is a part no other dialect has: a
    google-genai client gets it whole, streamed as well as not, with the
    signature Gemini 3 puts on it; an OpenAI client streaming the same
    endpoint gets the text."""
    gemini = genai.Client(api_key="dummy", http_options={"base_url": gemini_gateway.gemini_base_url})
    whole = gemini.models.generate_content(model=endpoint_name, contents="a cat")
    sent = fake.only_request().response_json["candidates"][0]["content"]["parts"][1]
    fake.reset()
    chunks = list(gemini.models.generate_content_stream(model=endpoint_name, contents="a cat"))
    assert fake.only_request().response_status == 200
    streamed = [part for chunk in chunks for part in chunk.candidates[0].content.parts]
    for parts in (whole.candidates[0].content.parts, streamed):
        assert "".join(part.text or "" for part in parts) == "Here is your image of: a cat"
        [image] = [part for part in parts if part.inline_data]
        assert (image.inline_data.mime_type, image.inline_data.data) == ("image/png", IMAGE_PNG)
        if "thoughtSignature" in sent:
            assert image.thought_signature == base64.b64decode(sent["thoughtSignature"])
        else:
            assert not image.thought_signature
    assert ("thoughtSignature" in sent) == (endpoint_name == IMAGE_3)

    fake.reset()
    client = fresh_client(gemini_gateway)
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model=endpoint_name, messages=[{"role": "user", "content": "a cat"}], stream=True)
        if chunk.choices
    )
    assert text == "Here is your image of: a cat"


def test_openai_clients_replay_gemini_3_calls_with_the_documented_skip_signature(client: OpenAI, fake: FakeGemini):
    """Chat Completions has no place for a signature: the replayed call is
    marked with Google's documented skip value, which Gemini 3 accepts."""
    messages = [{"role": "user", "content": "Oslo"}]
    resp = client.chat.completions.create(model=SIGNING, messages=messages, tools=[WEATHER_TOOL])
    call = resp.choices[0].message.tool_calls[0]
    assert "thoughtSignature" in fake.only_request().response_json["candidates"][0]["content"]["parts"][0]

    fake.reset()
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "4 degrees"},
    ]
    resp2 = client.chat.completions.create(model=SIGNING, messages=messages, tools=[WEATHER_TOOL])
    assert resp2.choices[0].message.content == "Tool result: 4 degrees"
    assert fake.only_request().json["contents"][1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE


# -- vision ------------------------------------------------------------------------------


def test_reasoning_requests_become_a_thinking_budget(gemini_gateway: Gateway, client: OpenAI, fake: FakeGemini):
    """An OpenAI client's reasoning_effort and an Anthropic client's
    thinking reach Gemini as thinkingConfig: the level's (or the client's)
    budget with the thoughts shown, or a budget of 0 when turned off."""
    resp = client.chat.completions.create(model=CHAT, messages=HELLO, reasoning_effort="medium")
    assert resp.choices[0].message.content == "Echo: Say hello to Portico"
    rec = fake.only_request()
    assert rec.response_status == 200
    assert rec.json["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 8192}
    assert "reasoning_effort" not in rec.json

    claude = anthropic.Anthropic(base_url=gemini_gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
    hi = [{"role": "user", "content": "hi"}]
    for thinking, config in [
        ({"type": "enabled", "budget_tokens": 3000}, {"includeThoughts": True, "thinkingBudget": 3000}),
        ({"type": "disabled"}, {"thinkingBudget": 0}),
    ]:
        fake.reset()
        answer = claude.messages.create(model=CHAT, max_tokens=4096, thinking=thinking, messages=hi)
        assert answer.content[-1].text == "Echo: hi"
        rec = fake.only_request()
        assert rec.response_status == 200
        assert rec.json["generationConfig"]["thinkingConfig"] == config
        assert rec.json["generationConfig"]["maxOutputTokens"] == 4096


def test_reasoning_reaches_each_gemini_generation_in_its_own_terms(
    gemini_gateway: Gateway, client: OpenAI, fake: FakeGemini
):
    """Gemini 3 takes a level (Pro only LOW or HIGH) and neither it nor
    Gemini 2.5 Pro can turn thinking off: "none" becomes the lowest setting
    the model takes instead of a budget of 0 the API refuses."""
    cases = [
        (PRO_25, "none", {"thinkingBudget": 128}),
        (PRO_25, "low", {"includeThoughts": True, "thinkingBudget": 2048}),
        (SIGNING, "none", {"thinkingLevel": "LOW"}),
        (SIGNING, "minimal", {"includeThoughts": True, "thinkingLevel": "LOW"}),
        (SIGNING, "medium", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
        (FLASH_3, "none", {"thinkingLevel": "MINIMAL"}),
        (FLASH_3, "medium", {"includeThoughts": True, "thinkingLevel": "MEDIUM"}),
        (FLASH_3, "high", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ]
    for endpoint, effort, config in cases:
        fake.reset()
        resp = client.chat.completions.create(model=endpoint, messages=HELLO, reasoning_effort=effort)
        rec = fake.only_request()
        assert rec.response_status == 200, (endpoint, effort, rec.response_json)
        assert rec.json["generationConfig"]["thinkingConfig"] == config, (endpoint, effort)
        assert resp.choices[0].message.content == "Echo: Say hello to Portico"
    # A Gemini client's own budget of 0 goes as sent, and is refused as the
    # API refuses it: the cases above would fail the same way.
    fake.reset()
    gemini = genai.Client(api_key="dummy", http_options={"base_url": gemini_gateway.gemini_base_url})
    off = genai_types.GenerateContentConfig(thinking_config=genai_types.ThinkingConfig(thinking_budget=0))
    for endpoint in (PRO_25, FLASH_3):
        with pytest.raises(genai_errors.ClientError, match="only works in thinking mode") as refused:
            gemini.models.generate_content(model=endpoint, contents="hi", config=off)
        assert refused.value.code == 400
    gemini.close()


def test_vision_images_are_forwarded(client: OpenAI, fake: FakeGemini):
    png_bytes = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    png = base64.b64encode(png_bytes).decode()
    web_url = "https://example.com/photos/cat.jpg"
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
    parts = fake.only_request().json["contents"][0]["parts"]
    assert parts[0] == {"text": "What is in these?"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": png}}
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == png_bytes
    assert parts[2] == {"fileData": {"mimeType": "image/jpeg", "fileUri": web_url}}


# -- embeddings --------------------------------------------------------------------------


def test_token_counts_come_from_gemini_count_tokens(gemini_gateway: Gateway, fake: FakeGemini):
    """google-genai's count_tokens reaches Gemini's countTokens with the
    whole request (model, contents) and the real key; the Anthropic SDK's
    count_tokens there counts its system prompt and tools too."""
    gemini = genai.Client(api_key="dummy", http_options={"base_url": gemini_gateway.gemini_base_url})
    counted = gemini.models.count_tokens(model=CHAT, contents="Count these four words")
    rec = fake.only_request()
    assert rec.path == f"/v1beta/models/{CHAT_MODEL}:countTokens"
    assert_upstream_auth(fake, rec)
    assert rec.json == {
        "generateContentRequest": {
            "model": f"models/{CHAT_MODEL}",
            "contents": [{"role": "user", "parts": [{"text": "Count these four words"}]}],
        }
    }
    assert counted.total_tokens == rec.response_json["totalTokens"] == 4
    gemini.close()

    fake.reset()
    claude = anthropic.Anthropic(base_url=gemini_gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    counted = claude.messages.count_tokens(
        model=CHAT, system="Be terse.", tools=[tool], messages=[{"role": "user", "content": "How many tokens"}]
    )
    sent = fake.only_request().json["generateContentRequest"]
    assert sent["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert "generationConfig" not in sent
    assert counted.input_tokens == 2 + 3

    fake.reset()
    with pytest.raises(genai_errors.ClientError) as limited:
        gemini = genai.Client(api_key="dummy", http_options={"base_url": gemini_gateway.gemini_base_url})
        gemini.models.count_tokens(model=RATE_LIMITED, contents="x")
    assert limited.value.code == 429


def test_embeddings(client: OpenAI, fake: FakeGemini):
    inputs = ["alpha", "beta gamma", "delta epsilon zeta"]
    resp = client.embeddings.create(model=EMBED, input=inputs, dimensions=6, encoding_format="float")
    rec = fake.only_request()
    assert [d.embedding for d in resp.data] == [vector_for(t, 6) for t in inputs]
    assert [d.index for d in resp.data] == [0, 1, 2]

    assert rec.path == f"/v1beta/models/{EMBED_MODEL}:batchEmbedContents"
    assert_upstream_auth(fake, rec)
    assert rec.json == {
        "requests": [
            {"model": f"models/{EMBED_MODEL}", "content": {"parts": [{"text": t}]}, "outputDimensionality": 6}
            for t in inputs
        ]
    }


def test_embeddings_default_base64(client: OpenAI, fake: FakeGemini):
    resp = client.embeddings.create(model=EMBED, input="just one")
    assert resp.data[0].embedding == vector_for("just one")


# -- errors --------------------------------------------------------------------------


def test_rate_limit_with_retry_info(client: OpenAI, fake: FakeGemini):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}])
    assert "exceeded your current quota" in e.value.message
    assert e.value.response.headers.get("retry-after") == str(RETRY_DELAY_SECONDS)
    assert len(fake.requests) == 1, "the gateway must not retry a 429 by itself"


def test_rate_limit_on_stream_and_embeddings(client: OpenAI, fake: FakeGemini):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=RATE_LIMITED, input="x")


def test_bad_key_is_authentication_error(client: OpenAI, fake: FakeGemini):
    # Gemini answers a bad key with 400 API_KEY_INVALID; clients must see 401.
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=BAD_KEY, messages=[{"role": "user", "content": "x"}])
    assert "API key not valid" in e.value.message
    rec = fake.only_request()
    assert rec.response_status == 400
    assert rec.headers["x-goog-api-key"] == "AIza-wrong-key"


def test_unknown_model_is_not_found(client: OpenAI, fake: FakeGemini):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model=MISSING, messages=[{"role": "user", "content": "x"}])
    assert "is not found" in e.value.message


def test_api_key_never_reaches_logs(gemini_gateway: Gateway, fake: FakeGemini, client: OpenAI):
    client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    assert fake.api_key not in gemini_gateway.log_text()
