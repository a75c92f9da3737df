"""A fake Anthropic Messages API upstream for the end-to-end tests.

It listens on 127.0.0.1, records every request (method, path, headers, raw
body) and speaks the real protocol: `POST /v1/messages` with `x-api-key`,
`anthropic-version` and a JSON body that must carry `model`, `max_tokens`
and `messages` (validated like the real API: a missing field is a 400
`invalid_request_error`). Answers are `message` objects, or, with
`"stream": true`, the real SSE sequence (message_start, content_block_start,
ping, content_block_delta text_delta / input_json_delta, content_block_stop,
message_delta, message_stop), written as many small chunked writes cut at
awkward places: inside `event:` lines, inside JSON, between the two newlines
ending an event, and inside a multi-byte UTF-8 character.

Answers are computed from the request:
- text: "Echo: <last user text>" (prefixed with "I see N image(s). " when
  the last user turn has images); after a tool result: "Tool result: <text>".
- if tools are offered, tool_choice is not {"type": "none"} and the last
  user turn holds no tool_result, the model calls a tool: the named one for
  {"type": "tool"}, else the first; input is {<first required property>:
  <user text>}.
- max_tokens cuts the answer to that many words (stop_reason max_tokens).
- model "force-429" answers a rate_limit_error with retry-after: 7,
  "force-529" an overloaded_error, "force-500" an api_error.
- model "force-overloaded-mid-stream", streamed, fails after its text as the
  real API may once it has answered 200: the text deltas, then an `error`
  event (overloaded_error), all in one write, so the gateway receives the
  text and the error together.
- a wrong x-api-key answers 401 authentication_error.
- fields of beta features (`context_management`, `mcp_servers`) need their
  beta named in the `anthropic-beta` header (a comma-separated list), as
  the real API requires; without it they are a 400 "Extra inputs are not
  permitted".
- `POST /v1/messages/count_tokens` takes the fields the real one takes
  (model and messages required; max_tokens, stream or a sampling option is
  a 400 "Extra inputs are not permitted") and answers {"input_tokens": N},
  N counted like a message's usage (`input_tokens_of`).
- with "thinking": {"type": "enabled"}, the answer starts with a thinking
  block signed by `thinking_signature` (streamed as thinking_delta events
  and one signature_delta, as the real API does). Like the real API, the
  fake rejects (400) a replayed thinking block whose signature does not
  match its text, and, with thinking enabled, a tool result whose
  assistant turn does not start with a thinking block, or a temperature
  other than 1, a top_p below 0.95 or any top_k.
- with "output_config": {"format": {"type": "json_schema", "schema": S}}
  (structured output), the text is JSON that follows S (`instance_of`:
  strings are the user's text); a malformed `output_config` (format type
  other than json_schema, no object schema, an unknown effort) is a 400.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import fake_server

API_VERSION = "2023-06-01"
RETRY_AFTER_SECONDS = 7


def count_tokens(text: str) -> int:
    """Whitespace words: a deterministic stand-in for a tokenizer."""
    return len(text.split())


COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# What the real count_tokens takes; anything else is refused.
COUNT_TOKENS_FIELDS = {
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "context_management",
    "mcp_servers",
    "output_config",
    "output_format",
}


def input_tokens_of(body: dict) -> int:
    """A request's input tokens: its system prompt's and messages' words."""
    system = body.get("system") or ""
    system_text = system if isinstance(system, str) else blocks_text(system)
    return count_tokens(system_text) + sum(count_tokens(blocks_text(m.get("content"))) for m in body["messages"])


def blocks(content: Any) -> list[dict]:
    """A message `content` as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def blocks_text(content: Any) -> str:
    return "".join(b.get("text", "") for b in blocks(content) if b.get("type") == "text")


def tool_result_text(block: dict) -> str:
    content = block.get("content", "")
    return content if isinstance(content, str) else blocks_text(content)


def thinking_signature(thinking: str) -> str:
    """What the fake signs a thinking block with (the real API's signature
    is opaque; it only has to match the text on replay)."""
    return "Eq" + hashlib.sha256(thinking.encode()).hexdigest()


def thinking_errors(body: dict) -> str | None:
    """Why the real API would refuse the replayed thinking in `body`."""
    for i, message in enumerate(body["messages"]):
        for j, block in enumerate(blocks(message.get("content"))):
            if block.get("type") == "thinking" and block.get("signature") != thinking_signature(
                block.get("thinking", "")
            ):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    if (body.get("thinking") or {}).get("type") != "enabled":
        return None
    problem = thinking_sampling_error(body.get("temperature"), body.get("top_p"), body.get("top_k"))
    if problem:
        return problem
    messages = body["messages"]
    last = messages[-1]
    if any(b.get("type") == "tool_result" for b in blocks(last.get("content"))) and len(messages) >= 2:
        first = (blocks(messages[-2].get("content")) or [{}])[0]
        if first.get("type") not in ("thinking", "redacted_thinking"):
            return (
                f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                f"but found `{first.get('type')}`. When `thinking` is enabled, a final `assistant` message "
                "must start with a thinking block."
            )
    return None


def thinking_sampling_error(temperature, top_p, top_k) -> str | None:
    """The sampling options Anthropic refuses beside extended thinking (also
    Claude's rule on Bedrock)."""
    if temperature is not None and temperature != 1:
        return "`temperature` may only be set to 1 when thinking is enabled."
    if top_p is not None and not 0.95 <= top_p <= 1:
        return "`top_p` must be between 0.95 and 1 when thinking is enabled."
    if top_k is not None:
        return "`top_k` may not be set when thinking is enabled."
    return None


EFFORTS = ("low", "medium", "high", "max")


def output_config_error(body: dict) -> str | None:
    """Why the real API would refuse `output_config` in `body`."""
    config = body.get("output_config")
    if config is None:
        return None
    if not isinstance(config, dict):
        return "output_config: Input should be an object"
    effort = config.get("effort")
    if effort is not None and effort not in EFFORTS:
        return f"output_config.effort: Input should be one of {', '.join(EFFORTS)}"
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    if not isinstance(fmt.get("schema"), dict):
        return "output_config.format.schema: Field required"
    return None


def instance_of(schema: dict, text: str) -> Any:
    """A value that follows a JSON schema, strings filled with `text`."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return instance_of(schema["anyOf"][0], text)
    if kind == "object" or "properties" in schema:
        return {name: instance_of(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [instance_of(schema.get("items") or {"type": "string"}, text)]
    if kind == "integer":
        return count_tokens(text)
    if kind == "number":
        return count_tokens(text) + 0.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


def anthropic_error(type_: str, message: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_fake"}


def block_events(index: int, block: dict) -> list[tuple[str, dict]]:
    """The SSE events that stream one content block, as the real API cuts them."""

    def delta(d: dict) -> tuple[str, dict]:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})

    events: list[tuple[str, dict]] = []
    if block["type"] == "text":
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}))
        for i, word in enumerate(block["text"].split(" ")):
            events.append(delta({"type": "text_delta", "text": word if i == 0 else " " + word}))
    elif block["type"] == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        text = block["thinking"]
        for i in range(0, len(text), 9):
            events.append(delta({"type": "thinking_delta", "thinking": text[i : i + 9]}))
        events.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        partial = json.dumps(block["input"])
        events.append(delta({"type": "input_json_delta", "partial_json": ""}))
        for i in range(0, len(partial), 6):
            events.append(delta({"type": "input_json_delta", "partial_json": partial[i : i + 6]}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


@dataclass
class Reply:
    """What the Messages API answers a request: JSON, or SSE events."""

    status: int = 200
    json: dict | None = None
    headers: dict[str, str] | None = None
    events: list[tuple[str, dict]] | None = None  # a streamed answer
    one_write: bool = False  # the whole stream in one write


def error_reply(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, anthropic_error(type_, message), headers)


def write_sse(handler: fake_server.RecordingHandler, rec: Any, events: list[tuple[str, dict]], one_write: bool = False) -> None:
    """Writes `events` as the Messages API's SSE body, in awkward chunks
    unless `one_write`; records them on `rec.response_events`."""
    handler._start_sse(rec, events)
    payload = b"".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode() for name, data in events
    )
    for piece in [payload] if one_write else awkward_chunks(payload):
        handler._write_chunk(piece)
        time.sleep(0.001)
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    # The (event, data) pairs of a streamed answer.
    response_events: list[tuple[str, dict]] = field(default_factory=list)


class FakeAnthropic(fake_server.RecordingServer):
    thread_name = "fake-anthropic"

    def __init__(self, api_key: str) -> None:
        super().__init__(_Handler)
        self.api_key = api_key
        self._ids = itertools.count(1)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"


def awkward_chunks(data: bytes) -> list[bytes]:
    """`data` cut into small pieces of varying size, plus one cut inside the
    first multi-byte UTF-8 character, if any."""
    cuts = set()
    pos, sizes = 0, itertools.cycle([1, 7, 3, 29, 2, 61, 11])
    while pos < len(data):
        pos += next(sizes)
        cuts.add(min(pos, len(data)))
    multibyte = next((i for i, b in enumerate(data) if b >= 0xC0), None)
    if multibyte is not None:
        cuts.add(multibyte + 1)
    edges = [0, *sorted(cuts)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


class _Handler(fake_server.RecordingHandler):
    fake: FakeAnthropic
    server_version = "fake-anthropic/1.0"
    json_headers = {"request-id": "req_fake"}

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        self.fake._record(rec)

        if self.headers.get("x-api-key") != self.fake.api_key:
            return self._send_json(rec, 401, anthropic_error("authentication_error", "invalid x-api-key"))
        if self.headers.get("anthropic-version") != API_VERSION:
            msg = f"anthropic-version: must be {API_VERSION}, got {self.headers.get('anthropic-version')!r}"
            return self._send_json(rec, 400, anthropic_error("invalid_request_error", msg))
        if url.path not in ("/v1/messages", COUNT_TOKENS_PATH):
            return self._send_json(rec, 404, anthropic_error("not_found_error", "Not Found"))
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._send_json(rec, 400, anthropic_error("invalid_request_error", "content-type must be JSON"))
        try:
            body = json.loads(rec.body)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return self._send_json(rec, 400, anthropic_error("invalid_request_error", "invalid JSON body"))
        betas = betas_of(self.headers.get("anthropic-beta"))
        reply = messages_reply(body, url.path == COUNT_TOKENS_PATH, self.fake.next_id, betas)
        if reply.events is not None:
            return write_sse(self, rec, reply.events, reply.one_write)
        return self._send_json(rec, reply.status, reply.json, reply.headers)


BETA_FIELDS = {"context_management": "context-management-2025-06-27", "mcp_servers": "mcp-client-2025-04-04"}


def betas_of(header: str | None) -> set[str]:
    """The beta names of an `anthropic-beta` header."""
    return {name.strip() for name in (header or "").split(",") if name.strip()}


def messages_reply(body: dict, counting: bool, next_id: Callable[[str], str], betas: set[str] = frozenset()) -> Reply:
    """The Messages API's answer to `body` (already parsed JSON; a count
    when `counting`; `betas` from the anthropic-beta header), validated like
    the real API; `next_id` makes ids."""
    for name, beta in BETA_FIELDS.items():
        if name in body and beta not in betas:
            return error_reply(400, "invalid_request_error", f"{name}: Extra inputs are not permitted")
    if counting:
        extra = sorted(set(body) - COUNT_TOKENS_FIELDS)
        if extra:
            return error_reply(400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted")
        body = {"max_tokens": 1, **body}
    for required in ("model", "max_tokens", "messages"):
        if required not in body:
            return error_reply(400, "invalid_request_error", f"{required}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return error_reply(400, "invalid_request_error", "max_tokens: Input should be a positive integer")
    model = body["model"]
    if model == "force-429":
        return error_reply(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
            {"retry-after": str(RETRY_AFTER_SECONDS), "anthropic-ratelimit-requests-remaining": "0"},
        )
    if model == "force-529":
        return error_reply(529, "overloaded_error", "Overloaded")
    if model == "force-500":
        return error_reply(500, "api_error", "Internal server error")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages or messages[0].get("role") != "user":
        return error_reply(400, "invalid_request_error", "messages: first message must use the user role")
    roles = [m.get("role") for m in messages]
    if any(a == b for a, b in zip(roles, roles[1:])):
        return error_reply(400, "invalid_request_error", "messages: roles must alternate between user and assistant")
    refusal = thinking_errors(body) or output_config_error(body)
    if refusal:
        return error_reply(400, "invalid_request_error", refusal)
    if counting:
        return Reply(json={"input_tokens": input_tokens_of(body)})
    return _message_reply(body, next_id)


def _message_reply(body: dict, next_id: Callable[[str], str]) -> Reply:
    messages = body["messages"]
    last = messages[-1]
    last_blocks = blocks(last.get("content"))
    results = [b for b in last_blocks if b.get("type") == "tool_result"]
    user_text = blocks_text(last.get("content"))
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    model = body["model"]
    msg_id = next_id("msg_")
    input_tokens = input_tokens_of(body)

    tool_use = None
    if tools and choice.get("type") != "none" and not results and last.get("role") == "user":
        chosen = tools[0]
        if choice.get("type") == "tool":
            chosen = next((t for t in tools if t.get("name") == choice.get("name")), chosen)
        schema = chosen.get("input_schema") or {}
        arg = ((schema.get("required") or []) + list((schema.get("properties") or {}).keys()) + ["input"])[0]
        tool_use = {
            "type": "tool_use",
            "id": next_id("toolu_"),
            "name": chosen["name"],
            "input": {arg: user_text},
        }

    if tool_use is not None:
        content = [tool_use]
        stop_reason = "tool_use"
        output_tokens = max(1, len(json.dumps(tool_use["input"])) // 4)
    else:
        if results:
            text = "Tool result: " + " | ".join(tool_result_text(r) for r in results)
        else:
            images = [b for b in last_blocks if b.get("type") == "image"]
            prefix = f"I see {len(images)} image(s). " if images else ""
            text = f"{prefix}Echo: {user_text}"
        stop_reason = "end_turn"
        output_format = (body.get("output_config") or {}).get("format")
        if output_format:
            text = json.dumps(instance_of(output_format["schema"], user_text))
        words = text.split(" ")
        if body["max_tokens"] < len(words) and not output_format:
            text = " ".join(words[: body["max_tokens"]])
            stop_reason = "max_tokens"
        content = [{"type": "text", "text": text}]
        output_tokens = count_tokens(text)
    if (body.get("thinking") or {}).get("type") == "enabled":
        thinking = f"The user wrote: {user_text or 'a tool result'}. I should answer."
        content.insert(0, {"type": "thinking", "thinking": thinking, "signature": thinking_signature(thinking)})
        output_tokens += count_tokens(thinking)

    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    if not body.get("stream"):
        return Reply(
            json={
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
        )

    start_usage = dict(usage, output_tokens=1)
    events: list[tuple[str, dict]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    for index, block in enumerate(content):
        block_stream = block_events(index, block)
        if index == 0:
            # The real API pings right after the first block starts.
            block_stream.insert(1, ("ping", {"type": "ping"}))
        events.extend(block_stream)
    if model == "force-overloaded-mid-stream":
        # The answer's text, then the error instead of its end.
        events = [e for e in events if e[0] != "content_block_stop"]
        events.append(("error", anthropic_error("overloaded_error", "Overloaded")))
        return Reply(events=events, one_write=True)
    events.append(
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": output_tokens}},
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return Reply(events=events)
