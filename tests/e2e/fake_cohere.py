"""A fake Cohere v2 API upstream for the end-to-end tests.

It listens on 127.0.0.1, records every request (method, path, headers, raw
body) and validates it the way the real API would reject it: Bearer auth,
`POST /v2/chat` / `POST /v2/embed`, a JSON body with only v2 fields (an
OpenAI-only field such as `top_p` or `max_completion_tokens` is a 400),
message roles and shapes (tool calls with string arguments, tool messages
with a `tool_call_id`), `tool_choice` REQUIRED/NONE, and for embed a
required `input_type` and `embedding_types`.

Answers have the real shapes: chat responses with `message.content` blocks,
`tool_plan` + `tool_calls`, `finish_reason` and `usage.billed_units` /
`usage.tokens`; streams of typed SSE events (`event: <type>` + `data:`)
written as many chunked writes cut at awkward byte boundaries (inside the
`event:` line, inside JSON, inside multi-byte UTF-8); embed responses with
`embeddings.float` and `meta.billed_units`; errors as `{"id", "message"}`.

Behaviour, computed from the request:
- chat: "Echo: <last user text>" ("I see N image(s). " first when the turn
  has images); after a tool message: "Tool result: <content>".
- tools offered, tool_choice not NONE and the last message is the user's:
  a tool call of the first tool with {<first parameter>: <user text>}.
- `max_tokens` cuts the answer to that many words (finish MAX_TOKENS).
- model "force-<status>" answers that error (429 with Retry-After: 7).
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fake_server

RETRY_AFTER_SECONDS = 7
# Sizes of the successive writes of a stream body: cycling through these
# cuts frames everywhere (mid-line, mid-JSON, mid-UTF-8).
WRITE_SIZES = (1, 17, 5, 64, 3, 29, 2, 101, 11)

CHAT_FIELDS = {
    "model", "messages", "tools", "documents", "citation_options", "response_format", "safety_mode",
    "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty", "presence_penalty",
    "k", "p", "logprobs", "tool_choice", "strict_tools", "thinking", "stream", "priority",
}
EMBED_FIELDS = {"model", "texts", "images", "inputs", "input_type", "embedding_types", "output_dimension",
                "truncate", "max_tokens", "priority"}
INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}


def vector_for(text: str, dimensions: int | None = None) -> list[float]:
    """The fake's embedding of `text`: exact in float32, depends on the
    text; `dimensions` pads it with zeros to that size."""
    vec = [len(text) / 4.0, -len(text.split()) / 8.0, 0.5, -1.25]
    return (vec + [0.0] * dimensions)[:dimensions] if dimensions else vec


def count_tokens(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """Text of a Cohere message `content` (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def content_images(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        b["image_url"]["url"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "image_url" and isinstance(b.get("image_url"), dict)
    ]


class BadRequest(Exception):
    pass


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    response_events: list[tuple[str, dict]] = field(default_factory=list)
    stream_writes: int = 0


class FakeCohere(fake_server.RecordingServer):
    thread_name = "fake-cohere"

    def __init__(self, api_key: str) -> None:
        super().__init__(_Handler)
        self.api_key = api_key
        self._ids = itertools.count(1)

    def next_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._ids):04d}{uuid.uuid4().hex[:8]}"


class _Handler(fake_server.RecordingHandler):
    fake: FakeCohere
    server_version = "fake-cohere/1.0"
    json_headers = {"x-trial-endpoint-call-remaining": "999"}

    def _error(self, rec: RecordedRequest, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(rec, status, {"id": str(uuid.uuid4()), "message": message}, headers)

    def _send_events(self, rec: RecordedRequest, events: list[tuple[str, dict]]) -> None:
        self._start_sse(rec, events, "text/event-stream")
        blob = b"".join(
            f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode() for name, data in events
        )
        pos = 0
        for size in itertools.cycle(WRITE_SIZES):
            if pos >= len(blob):
                break
            self._write_chunk(blob[pos : pos + size])
            rec.stream_writes += 1
            pos += size
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        self.fake._record(rec)
        if self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            return self._error(rec, 401, "invalid api token")
        if (self.command, url.path) not in (("POST", "/v2/chat"), ("POST", "/v2/embed")):
            return self._error(rec, 404, f"no route for {self.command} {url.path}")
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            return self._error(rec, 400, "invalid request: content-type must be application/json")
        try:
            body = json.loads(rec.body)
            if not isinstance(body, dict):
                raise BadRequest("invalid request: body must be a JSON object")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest("invalid request: model must be a non-empty string")
            if model.startswith("force-"):
                return self._forced_error(rec, model)
            if url.path == "/v2/embed":
                return self._embed(rec, body)
            return self._chat(rec, body)
        except (BadRequest, ValueError) as e:
            return self._error(rec, 400, str(e))

    def _forced_error(self, rec: RecordedRequest, model: str) -> None:
        status = int(model.removeprefix("force-"))
        if status == 429:
            return self._error(
                rec,
                429,
                "You are using a Trial key, which is limited to 10 API calls / minute. Please try again later.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if status == 404:
            return self._error(rec, 404, f"model '{model}' not found, make sure the correct model ID was used")
        if status >= 500:
            return self._error(rec, status, "internal server error, this has been reported to our developers")
        return self._error(rec, status, f"forced error {status}")

    # -- chat -----------------------------------------------------------------

    def _validate_chat(self, body: dict) -> None:
        unknown = set(body) - CHAT_FIELDS
        if unknown:
            raise BadRequest(f"invalid request: unknown field: parameter {sorted(unknown)[0]} is not a valid field")
        thinking = body.get("thinking")
        if thinking is not None:
            if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
                raise BadRequest("invalid request: thinking.type must be one of enabled, disabled")
            if set(thinking) - {"type", "token_budget"}:
                raise BadRequest("invalid request: unknown field in thinking")
            budget = thinking.get("token_budget")
            if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
                raise BadRequest("invalid request: thinking.token_budget must be a positive integer")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("invalid request: messages must not be empty")
        call_ids: set[str] = set()
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ("system", "user", "assistant", "tool"):
                raise BadRequest(f"invalid request: messages[{i}].role must be system, user, assistant or tool")
            if role in ("system", "user") and not (isinstance(m.get("content"), (str, list)) and m["content"]):
                raise BadRequest(f"invalid request: messages[{i}].content is required")
            if role == "user" and isinstance(m["content"], list):
                for block in m["content"]:
                    if block.get("type") == "image_url":
                        url = (block.get("image_url") or {}).get("url", "")
                        if not (url.startswith("data:image/") or url.startswith("https://")):
                            raise BadRequest(f"invalid request: messages[{i}] has an invalid image url")
                    elif block.get("type") != "text":
                        raise BadRequest(f"invalid request: messages[{i}] has an invalid content block")
            if role == "assistant":
                for call in m.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    if call.get("type") != "function" or not call.get("id") or not isinstance(fn.get("arguments"), str):
                        raise BadRequest(f"invalid request: messages[{i}].tool_calls are malformed")
                    json.loads(fn["arguments"])
                    call_ids.add(call["id"])
                if not m.get("tool_calls") and not m.get("content"):
                    raise BadRequest(f"invalid request: messages[{i}] needs content or tool_calls")
            if role == "tool":
                if m.get("tool_call_id") not in call_ids:
                    raise BadRequest(f"invalid request: messages[{i}].tool_call_id does not match a tool call")
                if not isinstance(m.get("content"), (str, list)):
                    raise BadRequest(f"invalid request: messages[{i}].content is required")
        for tool in body.get("tools") or []:
            fn = tool.get("function") if isinstance(tool, dict) else None
            if tool.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name"):
                raise BadRequest("invalid request: tools must be function tools with a name")
        if body.get("tool_choice") not in (None, "REQUIRED", "NONE"):
            raise BadRequest("invalid request: tool_choice must be one of REQUIRED, NONE")
        if "p" in body and not 0.01 <= body["p"] <= 0.99:
            raise BadRequest("invalid request: p must be between 0.01 and 0.99")

    def _chat(self, rec: RecordedRequest, body: dict) -> None:
        self._validate_chat(body)
        messages = body["messages"]
        last = messages[-1]
        last_text = content_text(last.get("content"))
        tools = body.get("tools") or []
        limit = body.get("max_tokens")
        msg_id = str(uuid.uuid4())
        input_tokens = sum(count_tokens(content_text(m.get("content"))) for m in messages)

        tool_call = None
        if tools and body.get("tool_choice") != "NONE" and last["role"] == "user":
            fn = tools[0]["function"]
            params = fn.get("parameters") or {}
            arg = ((params.get("required") or []) + list((params.get("properties") or {}).keys()) + ["input"])[0]
            tool_call = {
                "id": f"{fn['name']}_{self.fake.next_id()}",
                "type": "function",
                "function": {"name": fn["name"], "arguments": json.dumps({arg: last_text}, ensure_ascii=False)},
            }
        if tool_call is not None:
            text = None
            plan = f"I will use {tool_call['function']['name']}."
            finish = "TOOL_CALL"
            output_tokens = count_tokens(plan) + 5
        else:
            if last["role"] == "tool":
                text = f"Tool result: {content_text(last['content'])}"
            else:
                images = content_images(last.get("content"))
                text = (f"I see {len(images)} image(s). " if images else "") + f"Echo: {last_text}"
            finish = "COMPLETE"
            words = text.split(" ")
            if isinstance(limit, int) and 0 < limit < len(words):
                text = " ".join(words[:limit])
                finish = "MAX_TOKENS"
            output_tokens = count_tokens(text)
        usage = {
            "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "tokens": {"input_tokens": input_tokens + 500, "output_tokens": output_tokens + 1},
        }

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant"}
            if tool_call is not None:
                message["tool_plan"] = plan
                message["tool_calls"] = [tool_call]
            else:
                message["content"] = [{"type": "text", "text": text}]
            return self._send_json(
                rec, 200, {"id": msg_id, "message": message, "finish_reason": finish, "usage": usage}
            )

        events: list[tuple[str, dict]] = [
            (
                "message-start",
                {
                    "id": msg_id,
                    "type": "message-start",
                    "delta": {
                        "message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
                    },
                },
            )
        ]
        if tool_call is not None:
            for word in plan.split(" "):
                events.append(("tool-plan-delta", {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": word + " "}}}))
            start = {"id": tool_call["id"], "type": "function", "function": {"name": tool_call["function"]["name"], "arguments": ""}}
            events.append(("tool-call-start", {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": start}}}))
            args = tool_call["function"]["arguments"]
            for i in range(0, len(args), 4):
                piece = {"function": {"arguments": args[i : i + 4]}}
                events.append(("tool-call-delta", {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": piece}}}))
            events.append(("tool-call-end", {"type": "tool-call-end", "index": 0}))
        else:
            events.append(
                ("content-start", {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})
            )
            for i, word in enumerate(text.split(" ")):
                piece = word if i == 0 else " " + word
                events.append(("content-delta", {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}))
            events.append(("content-end", {"type": "content-end", "index": 0}))
        events.append(("message-end", {"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}))
        return self._send_events(rec, events)

    # -- embed ----------------------------------------------------------------

    def _embed(self, rec: RecordedRequest, body: dict) -> None:
        unknown = set(body) - EMBED_FIELDS
        if unknown:
            raise BadRequest(f"invalid request: unknown field: parameter {sorted(unknown)[0]} is not a valid field")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise BadRequest("invalid request: texts must be a non-empty list of strings")
        if body.get("input_type") not in INPUT_TYPES:
            raise BadRequest(
                "invalid request: input_type is required and must be one of "
                "search_document, search_query, classification, clustering, image"
            )
        types = body.get("embedding_types")
        if types != ["float"]:
            raise BadRequest("invalid request: this fake serves embedding_types [\"float\"] only")
        dims = body.get("output_dimension")
        if dims is not None and dims not in (256, 512, 1024, 1536):
            raise BadRequest("invalid request: output_dimension must be one of 256, 512, 1024, 1536")
        vectors = [vector_for(t, dims) for t in texts]
        return self._send_json(
            rec,
            200,
            {
                "id": str(uuid.uuid4()),
                "embeddings": {"float": vectors},
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(map(count_tokens, texts))}},
                "response_type": "embeddings_by_type",
            },
        )
