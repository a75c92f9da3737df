"""The dialect x provider matrix: each official SDK (OpenAI chat completions,
Anthropic messages, Google Gen AI generate_content) against endpoints whose
providers speak different native protocols (OpenAI, Anthropic, Bedrock
Converse, Gemini, Ollama, Cohere v2), all through ONE real gateway. Every
cell checks both what the client got, in its own shape, and what the fake
upstream received in its own protocol.

Also: an oversized request body is a 413 in the client's dialect, and a
client that disconnects mid-stream makes the gateway drop the upstream
request (checked with a dedicated slow upstream that records whether its
write loop was cut off)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from fake_anthropic import FakeAnthropic
from fake_bedrock import FakeBedrock
from fake_cohere import FakeCohere
from fake_gemini import FakeGemini
from fake_ollama import FakeOllama
from fake_openai import FakeOpenAI
from harness import Gateway, _tail, launch_gateway, require_built

PLUGINS = ("openai", "anthropic", "bedrock", "gemini", "ollama", "cohere")
REGION = "us-west-2"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SLOW_ENDPOINT = "mx-slow"
SLOW_EVENTS = 30
SLOW_DELAY = 0.3


@dataclass(frozen=True)
class Provider:
    id: str
    endpoint: str
    model: str
    # Upstream paths in the provider's own protocol, non-streaming / streaming.
    path: str
    stream_path: str


PROVIDERS = [
    Provider("openai", "mx-openai", "gpt-fake-mini", "/v1/chat/completions", "/v1/chat/completions"),
    Provider("anthropic", "mx-anthropic", "claude-sonnet-4-5-20250929", "/v1/messages", "/v1/messages"),
    Provider(
        "bedrock",
        "mx-bedrock",
        BEDROCK_MODEL,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
    ),
    Provider(
        "gemini",
        "mx-gemini",
        "gemini-2.5-flash",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    ),
    Provider("ollama", "mx-ollama", "llama3.2", "/api/chat", "/api/chat"),
    Provider("cohere", "mx-cohere", "command-a-03-2025", "/v2/chat", "/v2/chat"),
]
PROVIDER_IDS = [p.id for p in PROVIDERS]
SDKS = ["openai", "anthropic", "genai"]

TOOL_NAME = "get_weather"
TOOL_DESCRIPTION = "Current weather of a city"
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


# -- a slow upstream that records whether its stream was cut off --------------------


class SlowUpstream:
    """An OpenAI-shaped upstream streaming SLOW_EVENTS chunks SLOW_DELAY
    apart, recording whether a write failed (the gateway closed the
    connection) before the last event."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cut_off = threading.Event()
        self.finished = threading.Event()
        self.events_written = 0
        self._server: ThreadingHTTPServer | None = None

    def reset(self) -> None:
        self.started.clear()
        self.cut_off.clear()
        self.finished.clear()
        self.events_written = 0

    def start(self) -> "SlowUpstream":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.started.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(SLOW_EVENTS):
                        event = {
                            "id": "chatcmpl-slow",
                            "object": "chat.completion.chunk",
                            "created": 1_700_000_000,
                            "model": body.get("model", "slow"),
                            "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
                        }
                        data = f"data: {json.dumps(event)}\n\n".encode()
                        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                        owner.events_written = i + 1
                        time.sleep(SLOW_DELAY)
                    done = b"data: [DONE]\n\n"
                    self.wfile.write(f"{len(done):X}\r\n".encode() + done + b"\r\n0\r\n\r\n")
                    self.wfile.flush()
                    owner.finished.set()
                except (BrokenPipeError, ConnectionResetError):
                    owner.cut_off.set()
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="slow-upstream", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fakes():
    keys = {
        "openai": "sk-" + secrets.token_hex(12),
        "anthropic": "sk-ant-" + secrets.token_hex(12),
        "gemini": "AIza" + secrets.token_urlsafe(24),
        "cohere": "co-" + secrets.token_hex(12),
        "ollama": "ol-" + secrets.token_hex(12),
    }
    started = {
        "openai": FakeOpenAI(api_key=keys["openai"]).start(),
        "anthropic": FakeAnthropic(keys["anthropic"]).start(),
        "bedrock": FakeBedrock(REGION).start(),
        "gemini": FakeGemini(keys["gemini"]).start(),
        "ollama": FakeOllama(proxy_key=keys["ollama"]).start(),
        "cohere": FakeCohere(api_key=keys["cohere"]).start(),
    }
    started["bedrock"].add_account(AWS_KEY, AWS_SECRET)
    slow = SlowUpstream().start()
    yield started, keys, slow
    for fake in started.values():
        fake.stop()
    slow.stop()


@pytest.fixture(scope="module")
def gateway(fakes, tmp_path_factory):
    require_built(*PLUGINS)
    started, keys, slow = fakes
    work = tmp_path_factory.mktemp("matrix-gateway")

    def endpoint(name: str, provider: str, model: str, config: dict[str, str]) -> str:
        lines = "".join(f'{k} = "{v}"\n' for k, v in config.items())
        return f'[[endpoints]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{model}"\n[endpoints.config]\n{lines}\n'

    by_id = {p.id: p for p in PROVIDERS}
    text = (
        endpoint(by_id["openai"].endpoint, "openai", by_id["openai"].model,
                 {"api_key": "${MX_OPENAI_KEY}", "base_url": started["openai"].base_url})
        + endpoint(by_id["anthropic"].endpoint, "anthropic", by_id["anthropic"].model,
                   {"api_key": "${MX_ANTHROPIC_KEY}", "base_url": started["anthropic"].base_url})
        + endpoint(by_id["bedrock"].endpoint, "bedrock", by_id["bedrock"].model,
                   {"aws_access_key_id": "${MX_AWS_KEY}", "aws_secret_access_key": "${MX_AWS_SECRET}",
                    "region": REGION, "base_url": started["bedrock"].base_url})
        + endpoint(by_id["gemini"].endpoint, "gemini", by_id["gemini"].model,
                   {"api_key": "${MX_GEMINI_KEY}", "base_url": started["gemini"].base_url})
        + endpoint(by_id["ollama"].endpoint, "ollama", by_id["ollama"].model,
                   {"base_url": started["ollama"].base_url})
        + endpoint(by_id["cohere"].endpoint, "cohere", by_id["cohere"].model,
                   {"api_key": "${MX_COHERE_KEY}", "base_url": started["cohere"].base_url})
        + endpoint(SLOW_ENDPOINT, "openai", "slow-model", {"api_key": "sk-slow", "base_url": slow.base_url})
    )
    config = work / "portico.toml"
    config.write_text(text)
    env = {
        "MX_OPENAI_KEY": keys["openai"],
        "MX_ANTHROPIC_KEY": keys["anthropic"],
        "MX_AWS_KEY": AWS_KEY,
        "MX_AWS_SECRET": AWS_SECRET,
        "MX_GEMINI_KEY": keys["gemini"],
        "MX_COHERE_KEY": keys["cohere"],
    }
    with launch_gateway(work, config, env=env) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(fakes, gateway: Gateway):
    started, _, slow = fakes
    for fake in started.values():
        fake.reset()
    slow.reset()
    if gateway.process.poll() is not None:
        pytest.fail(f"gateway exited:\n{_tail(gateway.log_text())}", pytrace=False)
    yield


# -- the three SDKs, one shape per operation -----------------------------------------


@dataclass
class Result:
    text: str
    usage_in: int | None
    usage_out: int | None


def chat(sdk: str, gw: Gateway, endpoint: str, prompt: str) -> Result:
    if sdk == "openai":
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
        r = client.chat.completions.create(model=endpoint, messages=[{"role": "user", "content": prompt}])
        assert r.choices[0].finish_reason == "stop"
        return Result(r.choices[0].message.content, r.usage.prompt_tokens, r.usage.completion_tokens)
    if sdk == "anthropic":
        client = anthropic.Anthropic(base_url=gw.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
        r = client.messages.create(model=endpoint, max_tokens=200, messages=[{"role": "user", "content": prompt}])
        assert r.stop_reason == "end_turn"
        text = "".join(b.text for b in r.content if b.type == "text")
        return Result(text, r.usage.input_tokens, r.usage.output_tokens)
    client = genai.Client(api_key="dummy", http_options={"base_url": gw.gemini_base_url})
    try:
        r = client.models.generate_content(model=endpoint, contents=prompt)
    finally:
        client.close()
    assert r.candidates[0].finish_reason == genai_types.FinishReason.STOP
    um = r.usage_metadata
    return Result(r.text, um.prompt_token_count if um else None, um.candidates_token_count if um else None)


def chat_stream(sdk: str, gw: Gateway, endpoint: str, prompt: str) -> str:
    if sdk == "openai":
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
        stream = client.chat.completions.create(
            model=endpoint, messages=[{"role": "user", "content": prompt}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    if sdk == "anthropic":
        client = anthropic.Anthropic(base_url=gw.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
        with client.messages.stream(
            model=endpoint, max_tokens=200, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.stop_reason == "end_turn"
        return text
    client = genai.Client(api_key="dummy", http_options={"base_url": gw.gemini_base_url})
    try:
        chunks = list(client.models.generate_content_stream(model=endpoint, contents=prompt))
    finally:
        client.close()
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    return "".join(c.text or "" for c in chunks)


@dataclass
class ToolCall:
    name: str
    args: dict
    usage_in: int | None
    usage_out: int | None


def tool_call(sdk: str, gw: Gateway, endpoint: str, prompt: str) -> ToolCall:
    if sdk == "openai":
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
        r = client.chat.completions.create(
            model=endpoint,
            messages=[{"role": "user", "content": prompt}],
            tools=[{"type": "function", "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION,
                                                     "parameters": TOOL_SCHEMA}}],
        )
        assert r.choices[0].finish_reason == "tool_calls"
        calls = r.choices[0].message.tool_calls
        assert calls and len(calls) == 1 and calls[0].type == "function" and calls[0].id
        return ToolCall(calls[0].function.name, json.loads(calls[0].function.arguments),
                        r.usage.prompt_tokens, r.usage.completion_tokens)
    if sdk == "anthropic":
        client = anthropic.Anthropic(base_url=gw.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
        r = client.messages.create(
            model=endpoint,
            max_tokens=200,
            tools=[{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": TOOL_SCHEMA}],
            messages=[{"role": "user", "content": prompt}],
        )
        assert r.stop_reason == "tool_use"
        uses = [b for b in r.content if b.type == "tool_use"]
        assert len(uses) == 1 and uses[0].id
        return ToolCall(uses[0].name, uses[0].input, r.usage.input_tokens, r.usage.output_tokens)
    client = genai.Client(api_key="dummy", http_options={"base_url": gw.gemini_base_url})
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(
                name=TOOL_NAME,
                description=TOOL_DESCRIPTION,
                parameters=genai_types.Schema(
                    type="OBJECT", properties={"city": genai_types.Schema(type="STRING")}, required=["city"]
                ),
            )
        ]
    )
    try:
        r = client.models.generate_content(
            model=endpoint, contents=prompt, config=genai_types.GenerateContentConfig(tools=[tool])
        )
    finally:
        client.close()
    calls = r.function_calls
    assert calls and len(calls) == 1
    um = r.usage_metadata
    return ToolCall(calls[0].name, dict(calls[0].args), um.prompt_token_count if um else None,
                    um.candidates_token_count if um else None)


# -- what the upstream received ----------------------------------------------------------


def upstream_request(fakes, provider: Provider):
    started, keys, _ = fakes
    fake = started[provider.id]
    rec = fake.only_request()
    assert rec.method == "POST"
    assert "dummy" not in json.dumps(rec.headers), "the client's key must not reach the upstream"
    if provider.id == "openai":
        assert rec.headers.get("authorization") == f"Bearer {keys['openai']}"
    elif provider.id == "anthropic":
        assert rec.headers.get("x-api-key") == keys["anthropic"]
    elif provider.id == "bedrock":
        assert rec.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential=" + AWS_KEY)
    elif provider.id == "gemini":
        assert rec.headers.get("x-goog-api-key") == keys["gemini"]
    elif provider.id == "cohere":
        assert rec.headers.get("authorization") == f"Bearer {keys['cohere']}"
    elif provider.id == "ollama":
        assert "authorization" not in rec.headers
    return rec


def last_user_text(provider: Provider, body: dict) -> str:
    """The last user text, read the way the provider's protocol carries it."""
    if provider.id == "gemini":
        return "".join(p.get("text", "") for p in body["contents"][-1]["parts"])
    if provider.id == "bedrock":
        return "".join(b.get("text", "") for b in body["messages"][-1]["content"])
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def assert_upstream_chat(fakes, provider: Provider, prompt: str, stream: bool) -> dict:
    rec = upstream_request(fakes, provider)
    assert rec.path == (provider.stream_path if stream else provider.path)
    body = rec.json
    if provider.id == "gemini":
        assert ("alt=sse" in rec.query) == stream
        assert body["contents"][-1]["role"] == "user"
    elif provider.id == "bedrock":
        assert body["messages"][-1]["role"] == "user"
        assert "model" not in body, "Converse carries the model in the path"
    else:
        assert body["model"] == provider.model
        assert body["messages"][-1]["role"] == "user"
        if provider.id == "ollama":
            assert body["stream"] is stream
        elif stream:
            assert body["stream"] is True
        else:
            assert not body.get("stream")
    assert last_user_text(provider, body) == prompt
    return body


def assert_upstream_tools(fakes, provider: Provider, body: dict) -> None:
    if provider.id == "anthropic":
        assert body["tools"][0]["name"] == TOOL_NAME
        assert body["tools"][0]["input_schema"]["required"] == ["city"]
    elif provider.id == "bedrock":
        spec = body["toolConfig"]["tools"][0]["toolSpec"]
        assert spec["name"] == TOOL_NAME and spec["inputSchema"]["json"]["required"] == ["city"]
    elif provider.id == "gemini":
        decl = body["tools"][0]["functionDeclarations"][0]
        assert decl["name"] == TOOL_NAME
    else:  # openai, ollama, cohere: OpenAI-style function tools
        fn = body["tools"][0]["function"]
        assert fn["name"] == TOOL_NAME and fn["parameters"]["required"] == ["city"]


# -- the matrix -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS, ids=PROVIDER_IDS)
@pytest.mark.parametrize("sdk", SDKS)
def test_plain_text(sdk: str, provider: Provider, gateway: Gateway, fakes):
    prompt = f"Hello from {sdk} to {provider.id}"
    result = chat(sdk, gateway, provider.endpoint, prompt)
    assert result.text == f"Echo: {prompt}"
    assert result.usage_in and result.usage_in > 0
    assert result.usage_out and result.usage_out > 0
    assert_upstream_chat(fakes, provider, prompt, stream=False)


@pytest.mark.parametrize("provider", PROVIDERS, ids=PROVIDER_IDS)
@pytest.mark.parametrize("sdk", SDKS)
def test_streaming(sdk: str, provider: Provider, gateway: Gateway, fakes):
    prompt = f"Stream from {sdk} via {provider.id} please"
    text = chat_stream(sdk, gateway, provider.endpoint, prompt)
    assert text == f"Echo: {prompt}"
    assert_upstream_chat(fakes, provider, prompt, stream=True)


@pytest.mark.parametrize("provider", PROVIDERS, ids=PROVIDER_IDS)
@pytest.mark.parametrize("sdk", SDKS)
def test_tool_call(sdk: str, provider: Provider, gateway: Gateway, fakes):
    call = tool_call(sdk, gateway, provider.endpoint, "Paris")
    assert call.name == TOOL_NAME
    assert call.args == {"city": "Paris"}
    assert call.usage_in and call.usage_in > 0
    assert call.usage_out is not None and call.usage_out > 0
    body = assert_upstream_chat(fakes, provider, "Paris", stream=False)
    assert_upstream_tools(fakes, provider, body)


# -- body limit ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_gateway(fakes, tmp_path_factory):
    require_built("openai")
    started, keys, _ = fakes
    work = tmp_path_factory.mktemp("matrix-small-gateway")
    config = work / "portico.toml"
    config.write_text(
        f'[[endpoints]]\nname = "mx-openai"\nprovider = "openai"\nmodel = "gpt-fake-mini"\n'
        f'[endpoints.config]\napi_key = "{keys["openai"]}"\nbase_url = "{started["openai"].base_url}"\n'
    )
    with launch_gateway(work, config, extra_args=["--max-body-bytes", "2048"]) as gw:
        yield gw


BIG_PROMPT = "word " * 2000  # ~10 kB, well over 2048 bytes


def test_body_limit_openai_sdk(small_gateway: Gateway, fakes):
    client = openai.OpenAI(base_url=small_gateway.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
    # Within the limit it works: the limit is what rejects the big one.
    ok = client.chat.completions.create(model="mx-openai", messages=[{"role": "user", "content": "small"}])
    assert ok.choices[0].message.content == "Echo: small"
    fakes[0]["openai"].reset()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="mx-openai", messages=[{"role": "user", "content": BIG_PROMPT}])
    assert err.value.status_code == 413
    body = err.value.body
    assert isinstance(body, dict) and "message" in body, f"not an OpenAI error object: {err.value.response.text!r}"
    assert fakes[0]["openai"].requests == [], "an oversized body must not reach the upstream"


def test_body_limit_anthropic_sdk(small_gateway: Gateway, fakes):
    client = anthropic.Anthropic(base_url=small_gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
    with pytest.raises(anthropic.APIStatusError) as err:
        client.messages.create(model="mx-openai", max_tokens=10, messages=[{"role": "user", "content": BIG_PROMPT}])
    assert err.value.status_code == 413
    body = err.value.response.json()
    assert body.get("type") == "error" and "type" in body.get("error", {}), (
        f"not an Anthropic error object: {err.value.response.text!r}"
    )
    assert fakes[0]["openai"].requests == []


def test_body_limit_genai_sdk(small_gateway: Gateway, fakes):
    client = genai.Client(api_key="dummy", http_options={"base_url": small_gateway.gemini_base_url})
    try:
        with pytest.raises(genai_errors.APIError) as err:
            client.models.generate_content(model="mx-openai", contents=BIG_PROMPT)
    finally:
        client.close()
    assert err.value.code == 413
    assert fakes[0]["openai"].requests == []


# -- client disconnect ------------------------------------------------------------------------


def test_client_disconnect_cancels_upstream(gateway: Gateway, fakes):
    slow: SlowUpstream = fakes[2]
    resp = requests.post(
        f"{gateway.openai_base_url}/chat/completions",
        json={"model": SLOW_ENDPOINT, "messages": [{"role": "user", "content": "[slow] go"}], "stream": True},
        headers={"Authorization": "Bearer dummy"},
        stream=True,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    first = next(resp.iter_content(chunk_size=None))
    assert b"data:" in first
    resp.close()
    assert slow.started.is_set()
    # Untouched, the upstream would write for SLOW_EVENTS * SLOW_DELAY = 9 s;
    # a gateway that cancels makes its next writes fail within a few events.
    assert slow.cut_off.wait(timeout=5), (
        f"upstream still streaming after the client left ({slow.events_written} events written, "
        f"finished={slow.finished.is_set()})"
    )
    assert not slow.finished.is_set()
    assert slow.events_written < SLOW_EVENTS
