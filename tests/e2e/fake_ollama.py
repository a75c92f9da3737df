"""A fake Ollama server (native API) for the end-to-end tests.

It listens on 127.0.0.1, records every request (method, path, headers, raw
body) and validates what a translator could get wrong:
- `POST /api/chat` and `POST /api/embed` with a JSON body; a plain server
  needs no auth, so requests to it must carry no Authorization header; the
  same routes under `/proxied` stand for a server behind an authenticating
  proxy and require `Authorization: Bearer <key>`.
- chat bodies: only native fields (an OpenAI field such as `max_tokens` or
  `temperature` at the top level is a 400, although the real server would
  silently ignore it: the fake is strict so mistakes show), sampling in
  `options` (`num_predict`, `temperature`, ...), `images` as base64 without
  a `data:` prefix, tool-call `arguments` as JSON objects, `tool` messages
  naming the called tool in `tool_name`. A missing `stream` means true, as
  on the real server.
- embed bodies: `input` (a string or a list of strings), `dimensions`.

Answers have the real shapes: chat objects with `message`, `done`,
`done_reason`, `prompt_eval_count`, `eval_count` and the durations; NDJSON
streams (`application/x-ndjson`) of such objects, tool calls whole in one
object without ids, written in chunked writes that split lines mid-JSON
and join the end of one line with the start of the next; embed objects
with `embeddings`; errors as `{"error": "..."}`.

Behaviour: "Echo: <last user text>" ("I see N image(s). " first when the
turn has images), "Tool result: <content> (from <tool_name>)" after a tool
message, a call of the first tool when tools are offered and the last
message is the user's; `options.num_predict` cuts the answer to that many
words (done_reason "length"); an unknown model ("missing-*") is a 404.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fake_server

CREATED_AT = "2025-06-01T10:00:00.123456789Z"
PROXY_PREFIX = "/proxied"
CHAT_FIELDS = {"model", "messages", "tools", "format", "options", "stream", "keep_alive", "think"}
OPTION_FIELDS = {
    "temperature", "top_p", "top_k", "num_predict", "stop", "seed", "presence_penalty",
    "frequency_penalty", "num_ctx", "repeat_penalty", "min_p",
}
EMBED_FIELDS = {"model", "input", "truncate", "options", "keep_alive", "dimensions"}
# Write sizes of stream bodies: lines get cut mid-JSON and glued to the next.
WRITE_SIZES = (7, 50, 3, 120, 1, 33)


def vector_for(text: str, dimensions: int | None = None) -> list[float]:
    vec = [len(text) / 2.0, -len(text.split()) / 4.0, 0.25, 1.5, -3.0]
    return (vec + [0.0] * dimensions)[:dimensions] if dimensions else vec


def count_tokens(text: str) -> int:
    return len(text.split())


class BadRequest(Exception):
    pass


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    response_lines: list[dict] = field(default_factory=list)
    stream_writes: int = 0


class FakeOllama(fake_server.RecordingServer):
    thread_name = "fake-ollama"

    def __init__(self, proxy_key: str) -> None:
        super().__init__(_Handler)
        self.proxy_key = proxy_key


class _Handler(fake_server.RecordingHandler):
    fake: FakeOllama
    json_content_type = "application/json; charset=utf-8"

    def _send_ndjson(self, rec: RecordedRequest, lines: list[dict]) -> None:
        rec.response_status = 200
        rec.response_lines = list(lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        blob = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
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
        url = urlsplit(self.path)
        rec = RecordedRequest(
            method="POST",
            path=url.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        self.fake._record(rec)
        path = url.path
        auth = self.headers.get("Authorization")
        if path.startswith(PROXY_PREFIX):
            if auth != f"Bearer {self.fake.proxy_key}":
                return self._send_json(rec, 401, {"error": "unauthorized"})
            path = path.removeprefix(PROXY_PREFIX)
        elif auth is not None:
            return self._send_json(rec, 400, {"error": "fake: a plain Ollama server takes no Authorization header"})
        if path not in ("/api/chat", "/api/embed"):
            return self._send_json(rec, 404, {"error": "404 page not found"})
        try:
            body = json.loads(rec.body)
            if not isinstance(body, dict):
                raise BadRequest("invalid request body")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest("model is required")
            if model.startswith("missing-"):
                return self._send_json(rec, 404, {"error": f'model "{model}" not found, try pulling it first'})
            if path == "/api/embed":
                return self._embed(rec, body)
            return self._chat(rec, body)
        except (BadRequest, ValueError) as e:
            return self._send_json(rec, 400, {"error": str(e)})

    # -- chat -----------------------------------------------------------------

    def _validate_chat(self, body: dict) -> None:
        unknown = set(body) - CHAT_FIELDS
        if unknown:
            raise BadRequest(f"fake: unknown top-level field(s) {sorted(unknown)} (sampling belongs in options)")
        think = body.get("think")
        if think is not None and not isinstance(think, bool) and think not in ("low", "medium", "high"):
            raise BadRequest(f"invalid think value: {think!r} (must be a boolean or one of low, medium, high)")
        options = body.get("options") or {}
        if set(options) - OPTION_FIELDS:
            raise BadRequest(f"fake: unknown option(s) {sorted(set(options) - OPTION_FIELDS)}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages are required")
        called: set[str] = set()
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                raise BadRequest(f"messages[{i}]: invalid role")
            if not isinstance(m.get("content", ""), str):
                raise BadRequest(f"messages[{i}]: content must be a string")
            for image in m.get("images") or []:
                if not isinstance(image, str) or image.startswith("data:"):
                    raise BadRequest(f"messages[{i}]: images must be base64 without a data: prefix")
                try:
                    base64.b64decode(image, validate=True)
                except binascii.Error as e:
                    raise BadRequest(f"messages[{i}]: illegal base64 data: {e}") from None
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                if not fn.get("name") or not isinstance(fn.get("arguments"), dict):
                    raise BadRequest(f"messages[{i}]: tool call arguments must be a JSON object")
                called.add(fn["name"])
            if m["role"] == "tool" and m.get("tool_name") not in called:
                raise BadRequest(f"messages[{i}]: tool_name must name a tool called earlier")

    def _chat(self, rec: RecordedRequest, body: dict) -> None:
        self._validate_chat(body)
        messages = body["messages"]
        last = messages[-1]
        last_text = last.get("content", "")
        tools = body.get("tools") or []
        options = body.get("options") or {}
        limit = options.get("num_predict")
        stream = body.get("stream", True)
        prompt_tokens = sum(count_tokens(m.get("content", "")) for m in messages)

        tool_call = None
        if tools and last["role"] == "user":
            fn = tools[0]["function"]
            params = fn.get("parameters") or {}
            arg = ((params.get("required") or []) + list((params.get("properties") or {}).keys()) + ["input"])[0]
            tool_call = {"function": {"name": fn["name"], "arguments": {arg: last_text}}}
        if tool_call is not None:
            text = ""
            reason = "stop"  # Ollama says "stop" for tool-calling turns too
            eval_count = 9
        else:
            if last["role"] == "tool":
                text = f"Tool result: {last_text} (from {last['tool_name']})"
            else:
                images = last.get("images") or []
                text = (f"I see {len(images)} image(s). " if images else "") + f"Echo: {last_text}"
            reason = "stop"
            words = text.split(" ")
            if isinstance(limit, int) and 0 < limit < len(words):
                text = " ".join(words[:limit])
                reason = "length"
            eval_count = count_tokens(text)
        final = {
            "model": body["model"],
            "created_at": CREATED_AT,
            "done_reason": reason,
            "done": True,
            "total_duration": 4883583458,
            "load_duration": 1334875,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 342546000,
            "eval_count": eval_count,
            "eval_duration": 4535599000,
        }
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_call is not None:
                message["tool_calls"] = [tool_call]
            return self._send_json(rec, 200, {**final, "message": message})

        def line(message: dict) -> dict:
            return {"model": body["model"], "created_at": CREATED_AT, "message": message, "done": False}

        lines = []
        if tool_call is not None:
            lines.append(line({"role": "assistant", "content": "", "tool_calls": [tool_call]}))
        else:
            for i, word in enumerate(text.split(" ")):
                lines.append(line({"role": "assistant", "content": word if i == 0 else " " + word}))
        lines.append({**final, "message": {"role": "assistant", "content": ""}})
        return self._send_ndjson(rec, lines)

    # -- embed ----------------------------------------------------------------

    def _embed(self, rec: RecordedRequest, body: dict) -> None:
        unknown = set(body) - EMBED_FIELDS
        if unknown:
            raise BadRequest(f"fake: unknown field(s) {sorted(unknown)}")
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise BadRequest("invalid input type")
        dims = body.get("dimensions")
        return self._send_json(
            rec,
            200,
            {
                "model": body["model"],
                "embeddings": [vector_for(t, dims) for t in inputs],
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": sum(map(count_tokens, inputs)),
            },
        )
