"""The vertex plugin, end to end: the official OpenAI SDK talks to the real
gateway binary, which runs the real vertex.wasm against a fake Vertex AI
(fake_vertex.py). The plugin signs a JWT with the service account's key (a
key pair generated here), exchanges it at the fake's token endpoint (which
verifies the signature with the public key) through the host's sandboxed
http-fetch, caches the token, and calls the API with it."""

from __future__ import annotations

import base64
import json
import secrets

import anthropic
import openai
import pytest
from google import genai
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from openai import OpenAI

from fake_gemini import parts_text, vector_for
from fake_vertex import SCOPE, FakeVertex
from harness import Gateway, free_port, launch_gateway, require_built
from provider_helpers import (
    CITY_WEATHER_TOOL as WEATHER_TOOL,
    anthropic_client,
    assert_client_key_not_sent,
    check_alive,
    fresh_client,
)

SA_VAR = "PORTICO_E2E_VERTEX_SA"
ROGUE_SA_VAR = "PORTICO_E2E_VERTEX_ROGUE_SA"
UNREACHABLE_SA_VAR = "PORTICO_E2E_VERTEX_UNREACHABLE_SA"
CLIENT_KEY = "client-dummy-key"
PROJECT = "portico-e2e-123"
LOCATION = "europe-west4"
EMAIL = "portico-gateway@portico-e2e-123.iam.gserviceaccount.com"
ROGUE_EMAIL = "intruder@portico-e2e-123.iam.gserviceaccount.com"

CHAT = "vx-chat"
EMBED = "vx-embed"
WRONG_KEY = "vx-wrong-key"
RATE_LIMITED = "vx-rate-limited"
WRONG_PROJECT = "vx-wrong-project"
TOKEN_HOST_NOT_ALLOWED = "vx-token-host-not-allowed"
CHAT_MODEL = "gemini-2.5-flash"
PRO_3 = "vx-3-pro"
PRO_3_MODEL = "gemini-3-pro-preview"
EMBED_MODEL = "text-embedding-005"
CLAUDE = "vx-claude"
CLAUDE_MODEL = "claude-sonnet-4-5@20250929"
CLAUDE_OVERLOADED = "vx-claude-overloaded"
LLAMA = "vx-llama"
LLAMA_MODEL = "meta/llama-4-maverick-17b-128e-instruct-maas"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_file(key: rsa.RSAPrivateKey, email: str, key_id: str, token_uri: str) -> str:
    """A service-account key file as IAM hands them out (PKCS#8 PEM)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": "104958275638275610293",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }
    )


@pytest.fixture(scope="module")
def fake():
    with FakeVertex(PROJECT, LOCATION) as fake:
        yield fake


@pytest.fixture(scope="module")
def accounts(fake: FakeVertex) -> dict[str, str]:
    key, key_id = new_key(), secrets.token_hex(20)
    fake.add_account(EMAIL, key_id, key.public_key())
    # Same e-mail and key id as a registered account, but another key: its
    # signatures must not verify.
    rogue = new_key()
    fake.add_account(ROGUE_EMAIL, "rogue-key-id", new_key().public_key())
    return {
        SA_VAR: key_file(key, EMAIL, key_id, fake.token_uri),
        ROGUE_SA_VAR: key_file(rogue, ROGUE_EMAIL, "rogue-key-id", fake.token_uri),
        # A token endpoint on a port no config value opens: the host's
        # http-fetch allow-list must refuse it.
        UNREACHABLE_SA_VAR: key_file(key, EMAIL, key_id, f"http://127.0.0.1:{free_port()}/token"),
    }


@pytest.fixture(scope="module")
def vertex_gateway(fake: FakeVertex, accounts: dict[str, str], tmp_path_factory):
    require_built("vertex")
    work = tmp_path_factory.mktemp("vertex-gateway")

    def endpoint(name: str, model: str, sa_var: str = SA_VAR, project: str = PROJECT) -> str:
        return (
            "[[endpoints]]\n"
            f'name = "{name}"\n'
            'provider = "vertex"\n'
            f'model = "{model}"\n'
            "[endpoints.config]\n"
            f'service_account_json = "${{{sa_var}}}"\n'
            f'project = "{project}"\n'
            f'location = "{LOCATION}"\n'
            f'base_url = "{fake.base_url}"\n\n'
        )

    config = work / "portico.toml"
    config.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(PRO_3, PRO_3_MODEL)
        + endpoint(EMBED, EMBED_MODEL)
        + endpoint(WRONG_KEY, CHAT_MODEL, sa_var=ROGUE_SA_VAR)
        + endpoint(RATE_LIMITED, "force-429")
        + endpoint(WRONG_PROJECT, CHAT_MODEL, project="someone-elses-project")
        + endpoint(TOKEN_HOST_NOT_ALLOWED, CHAT_MODEL, sa_var=UNREACHABLE_SA_VAR)
        + endpoint(CLAUDE, CLAUDE_MODEL)
        # The fake's Claude answers this model with Anthropic's 529.
        + endpoint(CLAUDE_OVERLOADED, "publishers/anthropic/models/force-529")
        + endpoint(LLAMA, LLAMA_MODEL)
    )
    with launch_gateway(work, config, env=accounts) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(fake: FakeVertex, vertex_gateway: Gateway):
    fake.reset()
    check_alive(vertex_gateway)
    yield


@pytest.fixture
def client(vertex_gateway: Gateway) -> OpenAI:
    return fresh_client(vertex_gateway, api_key=CLIENT_KEY)


def issued_tokens(fake: FakeVertex) -> set[str]:
    return {g.access_token for g in fake.issued(EMAIL)}


def assert_bearer(fake: FakeVertex, rec) -> None:
    auth = rec.headers.get("authorization", "")
    assert auth.startswith("Bearer ya29.c.fake-")
    assert auth.removeprefix("Bearer ") in issued_tokens(fake)
    assert_client_key_not_sent(rec, CLIENT_KEY)


def model_path(model: str, method: str, project: str = PROJECT, publisher: str = "google") -> str:
    return f"/v1/projects/{project}/locations/{LOCATION}/publishers/{publisher}/models/{model}:{method}"


def claude_path(model: str, method: str) -> str:
    return model_path(model, method, publisher="anthropic")


# -- auth ----------------------------------------------------------------------------


def test_chat_signs_in_with_the_service_account(client: OpenAI, fake: FakeVertex):
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to Vertex"},
        ],
    )
    assert resp.choices[0].message.content == "Echo: Say hello to Vertex"
    assert resp.choices[0].finish_reason == "stop"
    api = fake.only_request()
    sent = api.response_json
    assert resp.usage.prompt_tokens == sent["usageMetadata"]["promptTokenCount"]
    assert resp.usage.completion_tokens == sent["usageMetadata"]["candidatesTokenCount"]

    assert api.path == model_path(CHAT_MODEL, "generateContent")
    assert_bearer(fake, api)
    assert api.json["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert api.json["contents"] == [{"role": "user", "parts": [{"text": "Say hello to Vertex"}]}]

    # The exchange that produced the token: a form POST of a JWT the fake
    # verified with the account's public key.
    grant = next(g for g in reversed(fake.issued(EMAIL)) if api.headers["authorization"] == f"Bearer {g.access_token}")
    assert grant.header["alg"] == "RS256" and grant.header["typ"] == "JWT"
    assert grant.header["kid"], "the key id must be in the JWT header"
    assert grant.claims["iss"] == EMAIL
    assert grant.claims["aud"] == fake.token_uri
    assert grant.claims["scope"] == SCOPE
    assert grant.claims["exp"] - grant.claims["iat"] == 3600
    assert grant.form.startswith("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")


def test_token_is_cached_across_calls(client: OpenAI, fake: FakeVertex):
    client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "warm up"}])
    exchanges = len(fake.issued(EMAIL))
    fake.reset()
    for i in range(3):
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": f"call {i}"}])
    list(client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "streamed"}], stream=True))
    client.embeddings.create(model=EMBED, input="cached too")

    assert fake.token_requests() == [], "a fresh token was exchanged although one was cached"
    api = fake.api_requests()
    assert len(api) == 5
    tokens = {r.headers["authorization"] for r in api}
    assert len(tokens) == 1, "every call must reuse the one cached token"
    assert len(fake.issued(EMAIL)) == exchanges


# Gemini's and Claude's calls both: Vertex answers a revoked token in
# Google's shape, whichever publisher's model was called.
@pytest.mark.parametrize("endpoint", [CHAT, CLAUDE])
def test_revoked_token_is_dropped_and_replaced(client: OpenAI, fake: FakeVertex, endpoint: str):
    before = issued_tokens(fake)
    fake.revoke_tokens()
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=endpoint, messages=[{"role": "user", "content": "after revocation"}])
    assert "invalid authentication credentials" in e.value.message
    # The 401 made the plugin forget the token: the next call signs in anew.
    resp = client.chat.completions.create(model=endpoint, messages=[{"role": "user", "content": "signed in again"}])
    assert resp.choices[0].message.content == "Echo: signed in again"
    new_tokens = issued_tokens(fake) - before
    assert len(new_tokens) == 1
    assert fake.api_requests()[-1].headers["authorization"] == f"Bearer {new_tokens.pop()}"
    assert len(fake.token_requests()) == 1


def test_signature_from_the_wrong_key_is_an_authentication_error(client: OpenAI, fake: FakeVertex):
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=WRONG_KEY, messages=[{"role": "user", "content": "x"}])
    assert "Invalid JWT Signature" in e.value.message
    assert fake.api_requests() == [], "no API call without a token"
    refused = [g for g in fake.grants if g.client_email == ROGUE_EMAIL]
    assert refused and not any(g.ok for g in refused)


def test_token_endpoint_outside_the_allow_list_is_refused(client: OpenAI, fake: FakeVertex):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=TOKEN_HOST_NOT_ALLOWED, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert "not allowed" in e.value.message
    assert fake.requests == []


def test_wrong_project_is_permission_denied(client: OpenAI, fake: FakeVertex):
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model=WRONG_PROJECT, messages=[{"role": "user", "content": "x"}])
    assert "someone-elses-project" in e.value.message
    assert fake.only_request().path == model_path(CHAT_MODEL, "generateContent", "someone-elses-project")


def test_secrets_never_reach_logs(vertex_gateway: Gateway, accounts: dict[str, str]):
    log = vertex_gateway.log_text()
    key = json.loads(accounts[SA_VAR])["private_key"]
    body = key.split("-----")[2].strip().splitlines()
    assert not any(line in log for line in body if len(line) > 20)
    assert "ya29.c.fake-" not in log


# -- chat features ---------------------------------------------------------------------


def test_stream_with_usage(client: OpenAI, fake: FakeVertex):
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "stream über alles ✓ now"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rec = fake.only_request()
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "Echo: stream über alles ✓ now"
    assert len(pieces) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == rec.response_events[-1]["usageMetadata"]["candidatesTokenCount"]
    assert rec.path == model_path(CHAT_MODEL, "streamGenerateContent")
    assert rec.query_params == {"alt": ["sse"]}
    assert_bearer(fake, rec)


def test_reasoning_becomes_the_models_own_thinking_config(client: OpenAI, fake: FakeVertex):
    """Vertex takes thinkingConfig as the Gemini API does: a budget on
    Gemini 2.5 (0 turns it off), a level on Gemini 3, whose Pro cannot turn
    thinking off and gets LOW instead."""
    hi = [{"role": "user", "content": "hi"}]
    for endpoint, model, effort, config in [
        (CHAT, CHAT_MODEL, "none", {"thinkingBudget": 0}),
        (CHAT, CHAT_MODEL, "high", {"includeThoughts": True, "thinkingBudget": 16384}),
        (PRO_3, PRO_3_MODEL, "none", {"thinkingLevel": "LOW"}),
        (PRO_3, PRO_3_MODEL, "high", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ]:
        fake.reset()
        resp = client.chat.completions.create(model=endpoint, messages=hi, reasoning_effort=effort)
        rec = fake.only_request()
        assert rec.response_status == 200, (endpoint, effort, rec.response_json)
        assert rec.path == model_path(model, "generateContent")
        assert rec.json["generationConfig"]["thinkingConfig"] == config
        assert resp.choices[0].message.content == "Echo: hi"


def test_tool_call_round_trip(client: OpenAI, fake: FakeVertex):
    messages = [{"role": "user", "content": "Oslo"}]
    resp = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL])
    first = fake.only_request().json
    assert first["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert first["tools"][0]["functionDeclarations"][0]["parameters"]["type"] == "OBJECT"
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    fake.reset()
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": -3, "sky": "snow"}'},
    ]
    resp2 = client.chat.completions.create(model=CHAT, messages=messages, tools=[WEATHER_TOOL])
    answer = resp2.choices[0].message.content
    assert answer.startswith("Tool result: ")
    assert json.loads(answer.removeprefix("Tool result: ")) == {"temp_c": -3, "sky": "snow"}
    contents = fake.only_request().json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Oslo"}}
    # A JSON tool result is forwarded as structured data.
    assert contents[2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"result": {"temp_c": -3, "sky": "snow"}},
    }


def test_vision_inline_data(client: OpenAI, fake: FakeVertex):
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(range(64))).decode()
    resp = client.chat.completions.create(
        model=CHAT,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}"}},
                    {"type": "text", "text": "Describe it"},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == "I see 1 image(s). Echo: Describe it"
    parts = fake.only_request().json["contents"][0]["parts"]
    assert parts == [{"inlineData": {"mimeType": "image/jpeg", "data": jpeg}}, {"text": "Describe it"}]
    assert parts_text(parts) == "Describe it"


# -- embeddings ----------------------------------------------------------------------


def test_token_counts_come_from_vertex_count_tokens(vertex_gateway: Gateway, fake: FakeVertex):
    """google-genai's count_tokens and the Anthropic SDK's count_tokens reach
    Vertex's countTokens on the publisher model, signed in, with the
    request's contents and system instruction as they are."""
    gemini = genai.Client(api_key="dummy", http_options={"base_url": vertex_gateway.gemini_base_url})
    counted = gemini.models.count_tokens(model=CHAT, contents="Count these four words")
    rec = fake.only_request()
    assert rec.path == model_path(CHAT_MODEL, "countTokens")
    assert_bearer(fake, rec)
    assert rec.json == {"contents": [{"role": "user", "parts": [{"text": "Count these four words"}]}]}
    assert counted.total_tokens == rec.response_json["totalTokens"] == 4
    gemini.close()

    fake.reset()
    claude = anthropic_client(vertex_gateway)
    counted = claude.messages.count_tokens(
        model=CHAT, system="Be terse.", messages=[{"role": "user", "content": "How many tokens"}]
    )
    rec = fake.only_request()
    assert rec.json["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert counted.input_tokens == 2 + 3


def test_embeddings_through_predict(client: OpenAI, fake: FakeVertex):
    inputs = ["alpha", "beta gamma"]
    resp = client.embeddings.create(model=EMBED, input=inputs, dimensions=4, encoding_format="float")
    rec = fake.only_request()
    assert [d.embedding for d in resp.data] == [vector_for(t, 4) for t in inputs]
    assert resp.usage.prompt_tokens == 3  # the statistics.token_count of both
    assert rec.path == model_path(EMBED_MODEL, "predict")
    assert_bearer(fake, rec)
    assert rec.json == {
        "instances": [{"content": "alpha"}, {"content": "beta gamma"}],
        "parameters": {"outputDimensionality": 4},
    }


# -- errors ------------------------------------------------------------------------------


def test_rate_limit(client: OpenAI, fake: FakeVertex):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}])
    assert "Resource exhausted" in e.value.message
    assert len(fake.api_requests()) == 1
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=RATE_LIMITED, messages=[{"role": "user", "content": "x"}], stream=True)


# -- Claude on Vertex AI ------------------------------------------------------------------


def test_claude_chat_goes_through_raw_predict(client: OpenAI, fake: FakeVertex):
    """An OpenAI client's chat to a Claude endpoint reaches Anthropic's
    publisher path with the Messages body: no model in it (the path names
    it), Vertex's anthropic_version, the catalog's max_tokens, signed in
    with the service account's token."""
    resp = client.chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello Claude on Vertex"},
        ],
        temperature=0.3,
    )
    assert resp.choices[0].message.content == "Echo: Hello Claude on Vertex"
    assert resp.choices[0].finish_reason == "stop"
    rec = fake.only_request()
    assert rec.path == claude_path(CLAUDE_MODEL, "rawPredict")
    assert_bearer(fake, rec)
    assert rec.headers.get("x-api-key") is None
    assert rec.json == {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 64000,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello Claude on Vertex"}],
        "temperature": 0.3,
    }
    usage = rec.response_json["usage"]
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (usage["input_tokens"], usage["output_tokens"])


def test_claude_tool_call_round_trip(client: OpenAI, fake: FakeVertex):
    messages = [{"role": "user", "content": "Oslo"}]
    resp = client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL])
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Oslo"})
    assert fake.only_request().json["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]

    fake.reset()
    messages += [resp.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    resp = client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL])
    assert resp.choices[0].message.content == "Tool result: sunny"
    sent = fake.only_request().json["messages"]
    assert sent[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Oslo"}}
    assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}


def test_claude_streams_through_stream_raw_predict(vertex_gateway: Gateway, fake: FakeVertex):
    """The Anthropic SDK's stream and google-genai's stream both come from
    streamRawPredict's Messages SSE, split at awkward places by the fake."""
    claude = anthropic_client(vertex_gateway)
    with claude.messages.stream(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "stream über Vertex ✓"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: stream über Vertex ✓"
    assert final.stop_reason == "end_turn"
    rec = fake.only_request()
    assert rec.path == claude_path(CLAUDE_MODEL, "streamRawPredict")
    assert_bearer(fake, rec)
    assert rec.json["stream"] is True and rec.json["max_tokens"] == 50
    assert "model" not in rec.json
    assert final.usage.output_tokens == rec.response_events[-2][1]["usage"]["output_tokens"]

    fake.reset()
    gemini = genai.Client(api_key="dummy", http_options={"base_url": vertex_gateway.gemini_base_url})
    pieces = [c.text for c in gemini.models.generate_content_stream(model=CLAUDE, contents="Gemini client, Claude model") if c.text]
    assert "".join(pieces) == "Echo: Gemini client, Claude model"
    assert fake.only_request().path == claude_path(CLAUDE_MODEL, "streamRawPredict")
    # Not streamed: a Gemini client gets a Gemini answer, not Anthropic's body.
    fake.reset()
    answer = gemini.models.generate_content(model=CLAUDE, contents="plain")
    assert answer.text == "Echo: plain"
    assert answer.candidates[0].finish_reason == "STOP"
    assert fake.only_request().path == claude_path(CLAUDE_MODEL, "rawPredict")
    gemini.close()


def test_claude_token_count_goes_to_count_tokens(vertex_gateway: Gateway, fake: FakeVertex):
    claude = anthropic_client(vertex_gateway)
    counted = claude.messages.count_tokens(
        model=CLAUDE, system="Be terse.", messages=[{"role": "user", "content": "How many tokens"}]
    )
    rec = fake.only_request()
    assert rec.path == claude_path("count-tokens", "rawPredict")
    assert_bearer(fake, rec)
    assert rec.json == {
        "anthropic_version": "vertex-2023-10-16",
        "model": CLAUDE_MODEL,
        "system": "Be terse.",
        "messages": [{"role": "user", "content": "How many tokens"}],
    }
    assert counted.input_tokens == rec.response_json["input_tokens"] > 0


def test_claude_errors_keep_their_meaning(vertex_gateway: Gateway, client: OpenAI, fake: FakeVertex):
    """Claude's own errors (Anthropic-shaped) reach clients as what they
    are (Vertex's own, Google-shaped: test_revoked_token_is_dropped_and_replaced)."""
    claude = anthropic_client(vertex_gateway)
    with pytest.raises(anthropic.APIStatusError) as e:
        claude.messages.create(model=CLAUDE_OVERLOADED, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 529
    assert e.value.body["error"]["type"] == "overloaded_error"
    assert fake.api_requests()[-1].path == claude_path("force-529", "rawPredict")

    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=CLAUDE, input="no vectors here")
    assert "Claude" in e.value.message


def test_claude_betas_reach_vertex_in_the_header(vertex_gateway: Gateway, fake: FakeVertex):
    """Vertex AI's Claude takes an Anthropic client's betas as Anthropic
    does: the anthropic-beta header beside rawPredict's body."""
    claude = anthropic_client(vertex_gateway)
    edits = {"edits": [{"type": "clear_tool_uses_20250919"}]}
    message = claude.beta.messages.create(
        model=CLAUDE,
        max_tokens=20,
        messages=[{"role": "user", "content": "beta on Vertex"}],
        betas=["context-management-2025-06-27"],
        context_management=edits,
    )
    assert message.content[0].text == "Echo: beta on Vertex"
    rec = fake.only_request()
    assert rec.path == claude_path(CLAUDE_MODEL, "rawPredict")
    assert rec.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert rec.json["context_management"] == edits
    assert "anthropic_beta" not in rec.json


# -- Model Garden's open models ------------------------------------------------------------

OPENAPI_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/openapi/chat/completions"


def test_model_garden_chat_goes_to_the_openai_compatible_endpoint(client: OpenAI, fake: FakeVertex):
    resp = client.chat.completions.create(
        model=LLAMA,
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello Llama"}],
        max_tokens=40,
        reasoning_effort="high",
    )
    assert resp.choices[0].message.content == "Echo: Hello Llama"
    rec = fake.only_request()
    assert rec.path == OPENAPI_PATH
    assert_bearer(fake, rec)
    # An OpenAI client's own fields go as sent (reasoning_effort too; the
    # gateway sends none of its own to these models).
    assert rec.json == {
        "model": LLAMA_MODEL,
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello Llama"}],
        "max_tokens": 40,
        "reasoning_effort": "high",
    }
    usage = rec.response_json["usage"]
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])

    fake.reset()
    call = client.chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": "Lima"}], tools=[WEATHER_TOOL])
    tool_call = call.choices[0].message.tool_calls[0]
    assert (tool_call.function.name, json.loads(tool_call.function.arguments)) == ("get_weather", {"city": "Lima"})
    assert fake.only_request().json["tools"] == [WEATHER_TOOL]


def test_model_garden_streams_reach_every_dialect(vertex_gateway: Gateway, client: OpenAI, fake: FakeVertex):
    chunks = list(
        client.chat.completions.create(
            model=LLAMA, messages=[{"role": "user", "content": "stream über Llama ✓"}], stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream über Llama ✓"
    rec = fake.only_request()
    assert rec.path == OPENAPI_PATH
    assert rec.json["stream"] is True and rec.json["stream_options"] == {"include_usage": True}
    assert chunks[-1].usage.completion_tokens == rec.response_events[-1]["usage"]["completion_tokens"]

    fake.reset()
    claude = anthropic_client(vertex_gateway)
    with claude.messages.stream(
        model=LLAMA,
        max_tokens=30,
        messages=[{"role": "user", "content": "from Anthropic's SDK"}],
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        assert "".join(stream.text_stream) == "Echo: from Anthropic's SDK"
    sent = fake.only_request().json
    assert sent["max_tokens"] == 30
    assert "reasoning_effort" not in sent and "thinking" not in sent


def test_model_garden_models_have_no_token_counter(vertex_gateway: Gateway, fake: FakeVertex):
    claude = anthropic_client(vertex_gateway)
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.count_tokens(model=LLAMA, messages=[{"role": "user", "content": "x"}])
    assert "token counting" in e.value.message
    assert fake.api_requests() == []
