"""A fake OpenAI API upstream for the end-to-end tests.

It listens on 127.0.0.1 with real sockets, records every request it gets
(method, path, headers, raw body) and answers with the shapes the real API
uses: `chat.completion` objects, SSE streams of `chat.completion.chunk`
events (written as separate chunked-encoding writes, one of them split in
the middle of its JSON, as a network may split it), tool calls (whole and
streamed as argument deltas), embeddings (float or base64), the model list,
and OpenAI error objects.

Answers are computed from the request, so a test can tell what came through:
- chat: "Echo: <last user text>" (prefixed with "I see N image(s). " when
  the turn has images); after a tool result: "Tool result: <content>".
- if tools are offered (and tool_choice is not "none") and the last turn is
  the user's, the model calls a tool: the named one for a forced
  tool_choice, else the first; arguments are {<first parameter>: <user text>}.
- max_tokens / max_completion_tokens cut the answer to that many words,
  finish_reason "length".
- "[slow]" in the user text spaces stream events 0.3 s apart.
- model "force-<status>" answers that HTTP error (429 with Retry-After: 7).
- a wrong `Authorization: Bearer` key answers 401 invalid_api_key.
- embeddings: vector_for(text), exactly representable in float32.
- a `reasoning_effort` the real API does not know answers 400
  invalid_value.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import fake_server

RETRY_AFTER_SECONDS = 7
REASONING_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}
SLOW_MARKER = "[slow]"
SLOW_DELAY_SECONDS = 0.3
CREATED = 1_700_000_000


def vector_for(text: str, dimensions: int | None = None) -> list[float]:
    """The fake's embedding of `text`: depends on the text (so order shows)
    and uses only values exact in float32 (so base64 round trips compare
    equal)."""
    vec = [len(text) / 4.0, -len(text.split()) / 8.0, 0.5, -1.25, 3.0, 0.0]
    return vec[:dimensions] if dimensions else vec


def count_tokens(text: str) -> int:
    """Whitespace words: a deterministic stand-in for a tokenizer."""
    return len(text.split())


def content_text(content: Any) -> str:
    """Text of an OpenAI message `content` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def content_images(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        p["image_url"]["url"]
        for p in content
        if isinstance(p, dict) and p.get("type") == "image_url" and isinstance(p.get("image_url"), dict)
    ]


def openai_error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    query: str = ""
    # What the fake answered: the JSON object, or the list of SSE payloads.
    response_events: list[Any] = field(default_factory=list)


class FakeOpenAI(fake_server.RecordingServer):
    """The fake upstream. `base_url` ends with /v1, like the real one."""

    thread_name = "fake-openai"

    def __init__(self, api_key: str) -> None:
        super().__init__(_Handler)
        self.api_key = api_key
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"{super().base_url}/v1"

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"


class _Handler(fake_server.RecordingHandler):
    fake: FakeOpenAI
    server_version = "fake-openai/1.0"

    def _json_headers(self, rec: fake_server.RecordedRequest) -> dict[str, str]:
        return {"x-request-id": f"req_{rec.path.strip('/').replace('/', '_')}"}

    def _handle(self) -> None:
        url = urlsplit(self.path)
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        self.fake._record(rec)

        if self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            shown = (given[:3] + "*" * 4 + given[-2:]) if given else ""
            msg = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            return self._send_json(rec, 401, openai_error(msg, "invalid_request_error", "invalid_api_key"))

        route = (self.command, url.path)
        if route == ("GET", "/v1/models"):
            return self._send_json(rec, 200, _models())
        if route not in (("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")):
            msg = f"Invalid URL ({self.command} {url.path})"
            return self._send_json(rec, 404, openai_error(msg, "invalid_request_error"))

        try:
            body = json.loads(rec.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            msg = (
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                "sent was not valid JSON."
            )
            return self._send_json(rec, 400, openai_error(msg, "invalid_request_error"))

        model = body.get("model")
        if isinstance(model, str) and model.startswith("force-"):
            return self._forced_error(rec, model)
        if not isinstance(model, str) or not model:
            msg = "you must provide a model parameter"
            return self._send_json(rec, 400, openai_error(msg, "invalid_request_error", param="model"))

        if url.path == "/v1/embeddings":
            return self._embeddings(rec, body)
        return self._chat(rec, body)

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle

    def _forced_error(self, rec: RecordedRequest, model: str) -> None:
        status = int(model.removeprefix("force-").split("-")[0] or 500)
        if status == 429:
            msg = (
                f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again in 7s."
            )
            return self._send_json(
                rec,
                429,
                openai_error(msg, "requests", "rate_limit_exceeded"),
                {
                    "Retry-After": str(RETRY_AFTER_SECONDS),
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{RETRY_AFTER_SECONDS}s",
                },
            )
        if status == 400:
            msg = "Invalid value for 'temperature': must be between 0 and 2."
            return self._send_json(rec, 400, openai_error(msg, "invalid_request_error", "invalid_value", "temperature"))
        if status == 404:
            msg = f"The model `{model}` does not exist or you do not have access to it."
            return self._send_json(rec, 404, openai_error(msg, "invalid_request_error", "model_not_found", "model"))
        if status >= 500:
            msg = "The server had an error while processing your request. Sorry about that!"
            return self._send_json(rec, status, openai_error(msg, "server_error"))
        return self._send_json(rec, status, openai_error(f"forced error {status}", "invalid_request_error"))

    # -- chat -------------------------------------------------------------

    def _chat(self, rec: RecordedRequest, body: dict) -> None:
        reply = chat_reply(body, self.fake.next_id)
        if reply.events is not None:
            return write_sse(self, rec, reply.events, reply.delay)
        return self._send_json(rec, reply.status, reply.json)

    # -- embeddings -------------------------------------------------------

    def _embeddings(self, rec: RecordedRequest, body: dict) -> None:
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
            msg = "'input' : input must be a non-empty string or array of strings"
            return self._send_json(rec, 400, openai_error(msg, "invalid_request_error", param="input"))
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            msg = f"Invalid value for 'encoding_format': '{fmt}'. Supported values are 'float' and 'base64'."
            return self._send_json(rec, 400, openai_error(msg, "invalid_request_error", param="encoding_format"))
        dimensions = body.get("dimensions")
        data = []
        for i, text in enumerate(inputs):
            vec = vector_for(text, dimensions)
            emb: Any = vec
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(count_tokens(t) for t in inputs)
        return self._send_json(
            rec,
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


@dataclass
class ChatReply:
    """A Chat Completions answer: JSON (with its status), or SSE events."""

    status: int = 200
    json: dict | None = None
    events: list[dict] | None = None
    delay: float = 0.0  # between streamed events


def write_sse(handler: fake_server.RecordingHandler, rec: Any, events: list[dict], delay: float = 0.0) -> None:
    """Writes `events` as Chat Completions SSE (then `[DONE]`), one event
    split mid-JSON across two writes; records them on `rec.response_events`."""
    handler._start_sse(rec, events)
    handler.wfile.flush()
    payloads = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    for i, payload in enumerate(payloads):
        if i == 1:
            # Split one event mid-JSON across two writes: a gateway must
            # reassemble SSE events from arbitrary network chunks.
            half = len(payload) // 2
            handler._write_chunk(payload[:half])
            time.sleep(0.02)
            handler._write_chunk(payload[half:])
        else:
            handler._write_chunk(payload)
        if delay:
            time.sleep(delay)
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


def chat_reply(body: dict, next_id: Callable[[str], str]) -> ChatReply:
    """The Chat Completions answer to `body` (parsed, with a model);
    `next_id` makes ids."""
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not messages:
        msg = "'messages' must contain at least one message."
        return ChatReply(400, openai_error(msg, "invalid_request_error", param="messages"))
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        msg = f"Invalid value: '{effort}'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high' and 'xhigh'."
        return ChatReply(400, openai_error(msg, "invalid_request_error", "invalid_value", "reasoning_effort"))

    prompt_tokens = sum(count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    last_text = content_text(last.get("content"))
    tools = body.get("tools") or []
    tool_choice = body.get("tool_choice", "auto")
    stream = bool(body.get("stream"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    delay = SLOW_DELAY_SECONDS if SLOW_MARKER in last_text else 0.0
    model = body["model"]
    completion_id = next_id("chatcmpl-")

    tool_call = None
    if tools and tool_choice != "none" and last.get("role") == "user":
        tool_call = _pick_tool_call(tools, tool_choice, last_text, next_id("call_"))

    if tool_call is not None:
        text = None
        finish = "tool_calls"
        completion_tokens = max(1, len(tool_call["function"]["arguments"]) // 4)
    else:
        if last.get("role") == "tool":
            text = f"Tool result: {last_text}"
        else:
            images = content_images(last.get("content"))
            prefix = f"I see {len(images)} image(s). " if images else ""
            text = f"{prefix}Echo: {last_text}"
        finish = "stop"
        words = text.split(" ")
        if isinstance(limit, int) and 0 < limit < len(words):
            text = " ".join(words[:limit])
            finish = "length"
        completion_tokens = count_tokens(text)

    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }

    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if tool_call is not None:
            message["tool_calls"] = [tool_call]
        return ChatReply(
            json={
                "id": completion_id,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            },
        )

    # What every chunk starts with, the usage chunk included.
    head = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        event = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if include_usage:
            event["usage"] = None
        return event

    events = []
    if tool_call is not None:
        args = tool_call["function"]["arguments"]
        first = {
            "index": 0,
            "id": tool_call["id"],
            "type": "function",
            "function": {"name": tool_call["function"]["name"], "arguments": ""},
        }
        events.append(chunk({"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}))
        for i in range(0, len(args), 5):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 5]}}]}))
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        words = text.split(" ")
        for i, word in enumerate(words):
            events.append(chunk({"content": word if i == 0 else " " + word}))
    events.append(chunk({}, finish))
    if include_usage:
        events.append({**head, "choices": [], "usage": usage})
    return ChatReply(events=events, delay=delay)


def _pick_tool_call(tools: list, tool_choice: Any, user_text: str, call_id: str) -> dict | None:
    functions = [t.get("function", {}) for t in tools if isinstance(t, dict) and t.get("type") == "function"]
    if not functions:
        return None
    chosen = functions[0]
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        chosen = next((f for f in functions if f.get("name") == wanted), chosen)
    params = chosen.get("parameters") or {}
    required = params.get("required") or []
    props = list((params.get("properties") or {}).keys())
    arg = (required or props or ["input"])[0]
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": chosen.get("name", ""), "arguments": json.dumps({arg: user_text})},
    }


def _models() -> dict:
    ids = ["gpt-fake-mini", "text-embedding-fake"]
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": CREATED, "owned_by": "fake"} for i in ids],
    }
