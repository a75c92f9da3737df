"""Cross-dialect calls: the official Anthropic and Google Gen AI SDKs calling
an endpoint whose provider speaks OpenAI, through the real gateway, with the
reference page's snippets as written (api_key="dummy", endpoint as model)."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from conftest import CHAT, CHAT_MODEL, EMBED, RATE_LIMITED, Gateway
from fake_openai import RETRY_AFTER_SECONDS, FakeOpenAI, content_text, vector_for

WEATHER = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def claude(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)


def gemini_client(gateway: Gateway, api_version: str | None = None) -> genai.Client:
    options: dict = {"base_url": gateway.gemini_base_url}
    if api_version:
        options["api_version"] = api_version
    return genai.Client(api_key="dummy", http_options=options)


def test_anthropic_sdk_reference_snippet(claude: anthropic.Anthropic, fake_upstream: FakeOpenAI):
    response = claude.messages.create(
        model=CHAT,
        max_tokens=1024,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello!"}],
    )
    assert response.content[0].text == "Echo: Hello!"
    assert response.stop_reason == "end_turn"
    assert response.usage.output_tokens > 0
    sent = fake_upstream.only_request().json
    assert sent["model"] == CHAT_MODEL
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."} or (
        sent["messages"][0]["role"] == "system" and content_text(sent["messages"][0]["content"]) == "Be brief."
    )
    assert content_text(sent["messages"][-1]["content"]) == "Hello!"
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 1024


def test_anthropic_sdk_streams_events(claude: anthropic.Anthropic, fake_upstream: FakeOpenAI):
    with claude.messages.stream(
        model=CHAT, max_tokens=100, messages=[{"role": "user", "content": "stream me please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: stream me please"
    assert final.content[0].text == text
    assert final.usage.output_tokens > 0
    assert fake_upstream.only_request().json["stream"] is True


def test_anthropic_sdk_tool_round_trip(claude: anthropic.Anthropic, fake_upstream: FakeOpenAI):
    first = claude.messages.create(
        model=CHAT, max_tokens=200, tools=[WEATHER], messages=[{"role": "user", "content": "Paris"}]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    sent_tools = fake_upstream.only_request().json["tools"]
    assert sent_tools[0]["function"]["name"] == "get_weather"
    assert sent_tools[0]["function"]["parameters"] == WEATHER["input_schema"]

    fake_upstream.reset()
    second = claude.messages.create(
        model=CHAT,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Paris"},
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}]},
        ],
    )
    assert second.content[0].text == "Tool result: 18 C"
    sent = fake_upstream.only_request().json["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "18 C"} or (
        sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == call.id and content_text(sent[-1]["content"]) == "18 C"
    )


def test_anthropic_sdk_errors_in_anthropic_shape(claude: anthropic.Anthropic):
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-endpoint", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "no-such-endpoint" in missing.value.message
    assert missing.value.body["type"] == "error"
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model=RATE_LIMITED, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model=EMBED, max_tokens=10, messages=[])


@pytest.mark.parametrize("api_version", [None, "v1beta", "v1"])
def test_gemini_sdk_reference_snippet(gateway: Gateway, fake_upstream: FakeOpenAI, api_version):
    client = gemini_client(gateway, api_version)
    response = client.models.generate_content(model=CHAT, contents={"text": "Hello!"})
    client.close()
    assert response.candidates[0].content.parts[0].text == "Echo: Hello!"
    assert response.usage_metadata.candidates_token_count > 0
    sent = fake_upstream.only_request().json
    assert sent["model"] == CHAT_MODEL
    assert content_text(sent["messages"][-1]["content"]) == "Hello!"


def test_gemini_sdk_streams_and_configures(gateway: Gateway, fake_upstream: FakeOpenAI):
    client = gemini_client(gateway)
    chunks = list(
        client.models.generate_content_stream(
            model=CHAT,
            contents="tell me more",
            config=genai_types.GenerateContentConfig(
                system_instruction="Be brief.", temperature=0.25, max_output_tokens=50, stop_sequences=["END"]
            ),
        )
    )
    client.close()
    assert "".join(c.text or "" for c in chunks) == "Echo: tell me more"
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    sent = fake_upstream.only_request().json
    assert sent["stream"] is True
    assert sent["temperature"] == 0.25
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 50
    assert sent["stop"] in (["END"], "END")
    assert sent["messages"][0]["role"] == "system"


def test_gemini_sdk_function_calling(gateway: Gateway, fake_upstream: FakeOpenAI):
    client = gemini_client(gateway)
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(
                name="get_weather",
                description="Current weather of a city",
                parameters=genai_types.Schema(
                    type="OBJECT", properties={"city": genai_types.Schema(type="STRING")}, required=["city"]
                ),
            )
        ]
    )
    config = genai_types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True)
    )
    response = client.models.generate_content(model=CHAT, contents="Rome", config=config)
    call = response.function_calls[0]
    assert call.name == "get_weather" and call.args == {"city": "Rome"}
    sent_tool = fake_upstream.only_request().json["tools"][0]["function"]
    assert sent_tool["name"] == "get_weather"
    assert sent_tool["parameters"]["properties"]["city"]["type"].lower() == "string"
    client.close()


def test_gemini_sdk_embeddings(gateway: Gateway, fake_upstream: FakeOpenAI):
    client = gemini_client(gateway)
    result = client.models.embed_content(model=EMBED, contents=["first text", "second one here"])
    client.close()
    assert [e.values for e in result.embeddings] == [vector_for("first text"), vector_for("second one here")]
    assert fake_upstream.only_request().json["input"] == ["first text", "second one here"]


def test_token_counting_on_a_provider_that_cannot_count_is_a_clear_400(
    claude: anthropic.Anthropic, gateway: Gateway, fake_upstream: FakeOpenAI
):
    """OpenAI's Chat Completions API has no token counter: count_tokens and
    countTokens say so in each client's own error shape, and nothing is
    sent upstream."""
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.count_tokens(model=CHAT, messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert f"endpoint '{CHAT}' does not support token counting" in refused.value.message
    client = gemini_client(gateway)
    with pytest.raises(genai_errors.ClientError) as google:
        client.models.count_tokens(model=CHAT, contents="x")
    assert (google.value.code, google.value.status) == (400, "INVALID_ARGUMENT")
    assert "token counting" in google.value.message
    client.close()
    openai_client = openai.OpenAI(base_url=gateway.openai_base_url, api_key="dummy", max_retries=0)
    with pytest.raises(openai.BadRequestError) as responses:
        openai_client.responses.input_tokens.count(model=CHAT, input="x")
    assert responses.value.body["type"] == "invalid_request_error"
    assert f"endpoint '{CHAT}' does not support token counting" in responses.value.message
    assert fake_upstream.requests == []
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-endpoint", messages=[{"role": "user", "content": "x"}])


def test_gemini_sdk_errors_in_google_shape(gateway: Gateway):
    client = gemini_client(gateway)
    with pytest.raises(genai_errors.ClientError) as missing:
        client.models.generate_content(model="no-such-endpoint", contents="x")
    assert missing.value.code == 404
    assert missing.value.status == "NOT_FOUND"
    with pytest.raises(genai_errors.ClientError) as limited:
        client.models.generate_content(model=RATE_LIMITED, contents="x")
    assert limited.value.code == 429
    client.close()


# --- OpenAI Responses API, served for any provider -------------------------

from openai import OpenAI  # noqa: E402


@pytest.fixture
def oai(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.openai_base_url, api_key="dummy", max_retries=0, timeout=30)


def test_responses_reference_snippet_and_multi_turn(oai: OpenAI, fake_upstream: FakeOpenAI):
    first = oai.responses.create(model=CHAT, input="Hello!", instructions="Be brief.")
    assert first.output_text == "Echo: Hello!"
    assert first.status == "completed" and first.id.startswith("resp_")
    assert first.usage.total_tokens > 0
    sent = fake_upstream.only_request().json
    assert sent["model"] == CHAT_MODEL
    assert sent["messages"][0]["role"] == "system"

    fake_upstream.reset()
    second = oai.responses.create(model=CHAT, input="And again?", previous_response_id=first.id)
    assert second.output_text == "Echo: And again?"
    assert second.previous_response_id == first.id
    history = [(m["role"], content_text(m.get("content"))) for m in fake_upstream.only_request().json["messages"]]
    assert history == [("user", "Hello!"), ("assistant", "Echo: Hello!"), ("user", "And again?")]


def test_responses_streaming(oai: OpenAI, fake_upstream: FakeOpenAI):
    events = list(oai.responses.create(model=CHAT, input="stream this", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Echo: stream this"
    assert events[-1].response.output_text == "Echo: stream this"
    assert fake_upstream.only_request().json["stream"] is True


def test_responses_function_call_round_trip(oai: OpenAI, fake_upstream: FakeOpenAI):
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    first = oai.responses.create(model=CHAT, input="Oslo", tools=tools)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.arguments and '"Oslo"' in call.arguments
    fake_upstream.reset()
    second = oai.responses.create(
        model=CHAT,
        previous_response_id=first.id,
        tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-3 C"}],
    )
    assert second.output_text == "Tool result: -3 C"
    sent = fake_upstream.only_request().json["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == call.call_id


def test_responses_errors(oai: OpenAI):
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model=CHAT, input="x", previous_response_id="resp_does_not_exist")
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-endpoint", input="x")
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=CHAT, input="x", tools=[{"type": "web_search"}])
    # A conversation object would be dropped silently: refused instead.
    with pytest.raises(openai.BadRequestError) as conversation:
        oai.responses.create(model=CHAT, input="x", conversation="conv_123")
    assert "'conversation' is not supported" in conversation.value.message


def test_reasoning_requests_reach_an_openai_upstream_as_reasoning_effort(
    claude: anthropic.Anthropic, gateway: Gateway, oai: OpenAI, fake_upstream: FakeOpenAI
):
    """Each dialect's way of asking for reasoning (Anthropic `thinking`,
    Gemini `thinkingConfig`, the Responses API's `reasoning`) reaches an
    OpenAI upstream as `reasoning_effort`: a budget as the level that
    covers it; "off" as nothing, since models without reasoning reject the
    field."""
    hi = [{"role": "user", "content": "think about it"}]
    cases = [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 3000}, "medium"),
        ({"type": "enabled", "budget_tokens": 12000}, "high"),
        ({"type": "disabled"}, None),
    ]
    for thinking, effort in cases:
        fake_upstream.reset()
        answer = claude.messages.create(model=CHAT, max_tokens=16000, thinking=thinking, messages=hi)
        assert answer.content[0].text == "Echo: think about it"
        sent = fake_upstream.only_request().json
        assert sent.get("reasoning_effort") == effort, thinking
        assert "thinking" not in sent, "Anthropic's own field is not forwarded to another dialect"

    client = gemini_client(gateway)
    cases = [
        (genai_types.ThinkingConfig(thinking_budget=2048, include_thoughts=True), "low"),
        (genai_types.ThinkingConfig(thinking_level=genai_types.ThinkingLevel.HIGH), "high"),
        (genai_types.ThinkingConfig(thinking_budget=0), None),
    ]
    for thinking, effort in cases:
        fake_upstream.reset()
        answer = client.models.generate_content(
            model=CHAT, contents="think about it", config=genai_types.GenerateContentConfig(thinking_config=thinking)
        )
        assert answer.text == "Echo: think about it"
        sent = fake_upstream.only_request().json
        assert sent.get("reasoning_effort") == effort, thinking
        assert "thinkingConfig" not in json.dumps(sent)

    fake_upstream.reset()
    response = oai.responses.create(model=CHAT, input="think about it", reasoning={"effort": "high"})
    assert response.output_text == "Echo: think about it"
    assert response.reasoning.effort == "high"
    assert fake_upstream.only_request().json["reasoning_effort"] == "high"


def test_openai_clients_reasoning_effort_passes_through_as_sent(oai: OpenAI, fake_upstream: FakeOpenAI):
    """To a provider of its own dialect, an OpenAI client's reasoning_effort
    goes as sent, even a value this gateway does not know: the upstream
    judges it, and its error reaches the client."""
    oai.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], reasoning_effort="minimal")
    assert fake_upstream.only_request().json["reasoning_effort"] == "minimal"
    fake_upstream.reset()
    with pytest.raises(openai.BadRequestError) as error:
        oai.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], extra_body={"reasoning_effort": "extreme"}
        )
    assert "reasoning_effort" in str(error.value) or "extreme" in str(error.value)
    assert fake_upstream.only_request().json["reasoning_effort"] == "extreme"


def test_anthropic_structured_output_and_effort_reach_an_openai_upstream(
    claude: anthropic.Anthropic, fake_upstream: FakeOpenAI
):
    """An Anthropic client's structured output (output_config.format)
    reaches an OpenAI upstream as a json_schema response_format, and its
    output_config.effort beside thinking as the reasoning level (`max` is
    OpenAI's `xhigh`); effort without thinking asks for no reasoning."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    hi = [{"role": "user", "content": "Bern"}]
    claude.messages.create(
        model=CHAT,
        max_tokens=16000,
        messages=hi,
        thinking={"type": "enabled", "budget_tokens": 2048},
        output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "max"},
    )
    sent = fake_upstream.only_request().json
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert sent["reasoning_effort"] == "xhigh"
    assert "output_config" not in sent, "Anthropic's own field is not forwarded to another dialect"

    fake_upstream.reset()
    claude.messages.create(model=CHAT, max_tokens=100, messages=hi, output_config={"effort": "low"})
    sent = fake_upstream.only_request().json
    assert "reasoning_effort" not in sent and "response_format" not in sent


# -- model lists ----------------------------------------------------------------------


def test_every_sdk_lists_the_endpoints_as_models(gateway: Gateway, claude: anthropic.Anthropic, fake_upstream: FakeOpenAI):
    """The Anthropic SDK pages through the Models API (limit, after_id,
    before_id) and retrieves one model; google-genai pages (pageSize,
    pageToken) and gets them too; no upstream call is made."""
    everything = [m.id for m in claude.models.list(limit=1000)]
    assert everything == sorted(everything) and {CHAT, EMBED} <= set(everything)
    # Auto-pagination one at a time walks the same list.
    assert [m.id for m in claude.models.list(limit=1)] == everything
    first = claude.models.list(limit=2)
    assert (first.has_more, first.first_id, first.last_id) == (len(everything) > 2, everything[0], everything[1])
    back = claude.models.list(limit=1, before_id=everything[2])
    assert [m.id for m in back.data] == [everything[1]] and back.has_more
    model = claude.models.retrieve(CHAT)
    assert (model.id, model.type, model.display_name) == (CHAT, "model", CHAT)
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("no-such-endpoint")
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.models.list(limit=0)
    assert e.value.body["error"]["type"] == "invalid_request_error"

    gemini = gemini_client(gateway)
    names = [m.name for m in gemini.models.list()]
    assert names == [f"models/{name}" for name in everything]
    # google-genai's pager follows nextPageToken one model at a time.
    pager = gemini.models.list(config={"page_size": 1})
    assert len(pager.page) == 1 and [m.name for m in pager] == names
    for bad in ({"page_token": "not a token"}, {"page_size": -1}):
        with pytest.raises(genai_errors.ClientError) as e:
            gemini.models.list(config=bad)
        assert (e.value.code, e.value.status) == (400, "INVALID_ARGUMENT")
    assert gemini.models.get(model=CHAT).name == f"models/{CHAT}"
    gemini.close()
    assert fake_upstream.requests == []
