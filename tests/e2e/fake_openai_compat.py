"""A fake upstream for the OpenAI-compatible providers (Azure OpenAI,
Mistral, Groq, Together, Fireworks, Databricks), one `Profile` per provider.

Each instance listens on 127.0.0.1 with real sockets, records every request
(method, path, query, headers, raw body) and checks what a real upstream
checks before answering:
- the route: the provider's path prefix (`/v1`, `/openai/v1`,
  `/inference/v1`), Azure's `/openai/deployments/{deployment}/...` with a
  required `api-version`, Databricks' `/serving-endpoints/{name}/invocations`;
- the credential: `Authorization: Bearer <key>`, Azure's `api-key` header
  (or an Entra ID bearer token);
- body rules of the provider: Mistral rejects fields it does not know
  (422 `extra_forbidden`, e.g. `seed`, `max_completion_tokens`,
  `stream_options`) and tool call ids other than 9 letters/digits;
  Databricks serving endpoints reject `model`; every profile checks that
  tool results answer a call made earlier in the conversation.

Answers are computed from the request, as in fake_openai (whose helpers
this reuses): "Echo: <last user text>", "I see N image(s). " for images,
"Tool result: <content>" after a tool result, a tool call when tools are
offered, cut to `max_tokens` words with finish_reason "length". Streams use
each provider's real shape (Azure's leading `prompt_filter_results` chunk
and content-filter annotations, Groq's `x_groq` usage, usage on the finish
chunk for Mistral/Together/Fireworks, cumulative usage on every chunk and
no `[DONE]` for Databricks) and are written as many small chunked-encoding
writes cut at awkward byte offsets (inside JSON, inside UTF-8 sequences).

Model (or deployment / serving endpoint) names trigger errors, in the
provider's own error shape: "force-429" (Retry-After: 7), "force-404",
"force-500", and on Azure "force-content-filter" (400 code content_filter).
A wrong credential answers 401.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fake_server
from fake_openai import _pick_tool_call, content_images, content_text, count_tokens, vector_for

RETRY_AFTER_SECONDS = 7
CREATED = 1_730_000_000
# Write sizes cycled over a stream body: small and odd, so frames, JSON and
# multi-byte characters are cut everywhere.
WRITE_SIZES = (7, 1, 13, 2, 31, 5, 64, 3)

MISTRAL_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "safe_prompt",
    }
)
MISTRAL_EMBEDDINGS_FIELDS = frozenset({"model", "input", "output_dimension", "output_dtype", "encoding_format"})
MISTRAL_TOOL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")


@dataclass(frozen=True)
class Profile:
    """How one provider differs; see the module docstring."""

    name: str
    # "body": model in the JSON body under `prefix`; "azure": deployment in
    # the path; "databricks": serving endpoint in the path.
    addressing: str
    prefix: str = ""
    # Header -> value format ("{key}" is replaced) accepted as credentials.
    auth_formats: tuple[tuple[str, str], ...] = (("authorization", "Bearer {key}"),)
    api_version: str | None = None
    embeddings: bool = True
    # "chunk": separate usage chunk when stream_options.include_usage;
    # "finish": usage on the finish chunk always; "x_groq": in x_groq.usage
    # of the finish chunk; "every": cumulative usage on every chunk.
    stream_usage: str = "chunk"
    done_marker: bool = True
    prompt_filter: bool = False
    strict_fields: frozenset[str] | None = None
    strict_embeddings_fields: frozenset[str] | None = None
    mistral_tool_ids: bool = False
    reject_model_in_body: bool = False
    # The `model` an answer reports (None: the requested one).
    reported_model: str | None = None


AZURE = Profile(
    name="azure",
    addressing="azure",
    auth_formats=(("api-key", "{key}"), ("authorization", "Bearer {entra}")),
    api_version="2024-10-21",
    prompt_filter=True,
    reported_model="gpt-4o-2024-08-06",
)
MISTRAL = Profile(
    name="mistral",
    addressing="body",
    prefix="/v1",
    stream_usage="finish",
    strict_fields=MISTRAL_CHAT_FIELDS,
    strict_embeddings_fields=MISTRAL_EMBEDDINGS_FIELDS,
    mistral_tool_ids=True,
)
GROQ = Profile(name="groq", addressing="body", prefix="/openai/v1", embeddings=False, stream_usage="x_groq")
TOGETHER = Profile(name="together", addressing="body", prefix="/v1", stream_usage="finish")
FIREWORKS = Profile(name="fireworks", addressing="body", prefix="/inference/v1", stream_usage="finish")
DATABRICKS = Profile(
    name="databricks",
    addressing="databricks",
    stream_usage="every",
    done_marker=False,
    reject_model_in_body=True,
)
PROFILES = {p.name: p for p in (AZURE, MISTRAL, GROQ, TOGETHER, FIREWORKS, DATABRICKS)}


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    query: str = ""
    response_headers: dict[str, str] = field(default_factory=dict)
    # Stream payloads as sent (dicts; "[DONE]" as a string).
    response_events: list[Any] = field(default_factory=list)

    @property
    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)


class UpstreamError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class FakeOpenAICompat(fake_server.RecordingServer):
    def __init__(self, profile: Profile, api_key: str, entra_token: str = "") -> None:
        super().__init__(_Handler)
        self.profile = profile
        self.api_key = api_key
        self.entra_token = entra_token
        self.thread_name = f"fake-{profile.name}"
        self._ids = itertools.count(1)

    @property
    def root_url(self) -> str:
        return super().base_url

    @property
    def base_url(self) -> str:
        """What an endpoint's `base_url` points at."""
        return self.root_url + self.profile.prefix

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"

    def tool_call_id(self) -> str:
        n = next(self._ids)
        if self.profile.mistral_tool_ids:
            return f"Mc{n:07d}"  # 9 letters/digits, like Mistral's own ids
        return f"call_{n:06d}fake"

    def accepted_credentials(self) -> list[tuple[str, str]]:
        return [
            (name, fmt.format(key=self.api_key, entra=self.entra_token))
            for name, fmt in self.profile.auth_formats
            if "{entra}" not in fmt or self.entra_token
        ]


# -- provider error shapes -------------------------------------------------------


def error_body(profile: Profile, status: int, message: str, code: str | None = None, type_: str | None = None) -> Any:
    """An error document in the provider's own shape."""
    if profile.name == "azure":
        return {"error": {"code": code or str(status), "message": message}}
    if profile.name == "mistral":
        if status == 401:
            return {"message": message, "request_id": "5e1d0b7f"}
        return {"object": "error", "message": message, "type": type_ or "invalid_request_error", "param": None, "code": code}
    if profile.name == "together":
        return {"id": "8b5f1c2d", "error": {"message": message, "type": type_ or "invalid_request_error", "param": None, "code": code}}
    if profile.name == "fireworks":
        return {"error": {"object": "error", "type": type_ or "invalid_request_error", "message": message}}
    if profile.name == "databricks":
        return {"error_code": code or str(status), "message": message}
    return {"error": {"message": message, "type": type_ or "invalid_request_error", "code": code}}


def unauthorized(profile: Profile) -> UpstreamError:
    message = {
        "azure": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        "mistral": "Unauthorized",
        "groq": "Invalid API Key",
        "together": "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
        "fireworks": "The API key you provided is invalid.",
        "databricks": "Credential was not sent or was of an unsupported type for this API. [ReqId: 2b9d1c]",
    }[profile.name]
    code = "invalid_api_key" if profile.name in ("groq", "together") else None
    return UpstreamError(401, error_body(profile, 401, message, code))


def forced_error(profile: Profile, target: str) -> UpstreamError | None:
    if not target.startswith("force-"):
        return None
    what = target.removeprefix("force-")
    if what == "429":
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if profile.name == "azure":
            headers["retry-after-ms"] = str(RETRY_AFTER_SECONDS * 1000)
            message = (
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
                "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 7 seconds."
            )
        elif profile.name == "databricks":
            message = f"REQUEST_LIMIT_EXCEEDED: Exceeded workspace rate limit for {target}."
        else:
            message = f"Rate limit reached for model `{target}`. Please try again in 7s."
        code = {"databricks": "REQUEST_LIMIT_EXCEEDED", "azure": "429"}.get(profile.name, "rate_limit_exceeded")
        return UpstreamError(429, error_body(profile, 429, message, code, "tokens"), headers)
    if what == "404":
        if profile.name == "azure":
            return UpstreamError(
                404,
                error_body(profile, 404, "The API deployment for this resource does not exist.", "DeploymentNotFound"),
            )
        return UpstreamError(404, error_body(profile, 404, f"The model `{target}` does not exist.", "model_not_found"))
    if what == "content-filter" and profile.name == "azure":
        return UpstreamError(
            400,
            {
                "error": {
                    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                    "status": 400,
                    "innererror": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_result": {
                            "hate": {"filtered": False, "severity": "safe"},
                            "violence": {"filtered": True, "severity": "medium"},
                        },
                    },
                }
            },
        )
    return UpstreamError(
        500, error_body(profile, 500, "The server had an error while processing your request.", None, "server_error")
    )


CONTENT_FILTER_SAFE = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


class _Handler(fake_server.RecordingHandler):
    fake: FakeOpenAICompat

    def _send_json(
        self, rec: fake_server.RecordedRequest, status: int, obj: Any, headers: dict[str, str] | None = None
    ) -> None:
        assert isinstance(rec, RecordedRequest)
        rec.response_headers = dict(headers or {})
        super()._send_json(rec, status, obj, headers)

    def _send_sse(self, rec: RecordedRequest, events: list[Any]) -> None:
        self._start_sse(rec, events)
        blob = b"".join(
            f"data: {e if isinstance(e, str) else json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events
        )
        pos = 0
        for size in itertools.cycle(WRITE_SIZES):
            if pos >= len(blob):
                break
            piece = blob[pos : pos + size]
            pos += size
            self._write_chunk(piece)
            time.sleep(0.001)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routing ----------------------------------------------------------

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
        try:
            self._route(rec, url.path)
        except UpstreamError as e:
            self._send_json(rec, e.status, e.body, e.headers)

    do_GET = _handle
    do_POST = _handle

    def _route(self, rec: RecordedRequest, path: str) -> None:
        profile = self.fake.profile
        # The credential is checked first, as real APIs do.
        if not any(rec.headers.get(name) == value for name, value in self.fake.accepted_credentials()):
            raise unauthorized(profile)

        operation, target = self._operation(rec, path)
        if rec.method != "POST":
            raise UpstreamError(405, error_body(profile, 405, "Method not allowed"))
        try:
            body = json.loads(rec.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            raise UpstreamError(400, error_body(profile, 400, "Invalid JSON body")) from None

        if profile.addressing == "body":
            target = body.get("model")
            if not isinstance(target, str) or not target:
                raise UpstreamError(400, error_body(profile, 400, "model is required"))
        elif profile.reject_model_in_body and "model" in body:
            raise UpstreamError(
                400,
                error_body(profile, 400, "Invalid request: 'model' is not a field of the serving endpoint's input.", "BAD_REQUEST"),
            )
        if operation is None:
            # Databricks: one route, the body says what is asked.
            operation = "chat" if "messages" in body else "embeddings" if "input" in body else None
            if operation is None:
                raise UpstreamError(
                    400, error_body(profile, 400, "Input must contain 'messages' or 'input'.", "BAD_REQUEST")
                )
        forced = forced_error(profile, target)
        if forced is not None:
            raise forced
        if operation == "chat":
            self._check_strict(body, profile.strict_fields)
            return self._chat(rec, body, target)
        self._check_strict(body, profile.strict_embeddings_fields)
        return self._embeddings(rec, body, target)

    def _operation(self, rec: RecordedRequest, path: str) -> tuple[str | None, str]:
        """(operation, target) of a valid route; raises the provider's 404."""
        profile = self.fake.profile
        not_found = UpstreamError(404, error_body(profile, 404, f"Unknown request URL: {rec.method} {path}", "unknown_url"))
        if profile.addressing == "azure":
            m = re.fullmatch(r"/openai/deployments/([^/]+)/(chat/completions|embeddings)", path)
            if not m:
                raise UpstreamError(404, error_body(profile, 404, "Resource not found", "404"))
            versions = rec.query_params.get("api-version", [])
            if len(versions) != 1 or not API_VERSION.fullmatch(versions[0]):
                raise UpstreamError(
                    404, error_body(profile, 404, "Resource not found: a valid api-version is required", "404")
                )
            return ("chat" if m.group(2) == "chat/completions" else "embeddings"), m.group(1)
        if profile.addressing == "databricks":
            m = re.fullmatch(r"/serving-endpoints/([^/]+)/invocations", path)
            if not m:
                raise UpstreamError(404, error_body(profile, 404, "Resource not found", "ENDPOINT_NOT_FOUND"))
            return None, m.group(1)
        if path == f"{profile.prefix}/chat/completions":
            return "chat", ""
        if path == f"{profile.prefix}/embeddings" and profile.embeddings:
            return "embeddings", ""
        raise not_found

    def _check_strict(self, body: dict, allowed: frozenset[str] | None) -> None:
        if allowed is None:
            return
        extra = sorted(set(body) - allowed)
        if extra:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted", "input": body[k]}
                for k in extra
            ]
            raise UpstreamError(
                422,
                {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error", "param": None, "code": None},
            )

    # -- chat -------------------------------------------------------------

    def _check_tool_ids(self, messages: list) -> None:
        profile = self.fake.profile
        made: set[str] = set()
        for m in messages:
            for call in m.get("tool_calls") or []:
                call_id = call.get("id", "")
                if profile.mistral_tool_ids and not MISTRAL_TOOL_ID.match(call_id):
                    raise UpstreamError(
                        400,
                        error_body(profile, 400, f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."),
                    )
                made.add(call_id)
            if m.get("role") == "tool":
                result_id = m.get("tool_call_id", "")
                if result_id not in made:
                    raise UpstreamError(
                        400, error_body(profile, 400, f"Tool result {result_id!r} answers no earlier tool call.")
                    )

    def _chat(self, rec: RecordedRequest, body: dict, target: str) -> None:
        profile = self.fake.profile
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not messages:
            raise UpstreamError(400, error_body(profile, 400, "messages must be a non-empty list"))
        self._check_tool_ids(messages)

        prompt_tokens = sum(count_tokens(content_text(m.get("content"))) for m in messages)
        last = messages[-1]
        last_text = content_text(last.get("content"))
        tools = body.get("tools") or []
        tool_choice = body.get("tool_choice", "auto")
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        model = profile.reported_model or body.get("model") or target
        completion_id = self.fake.next_id("chatcmpl-")

        tool_call = None
        if tools and tool_choice != "none" and last.get("role") == "user":
            tool_call = _pick_tool_call(tools, tool_choice, last_text, self.fake.tool_call_id())
        if tool_call is not None:
            text = None
            finish = "tool_calls"
            completion_tokens = max(1, len(tool_call["function"]["arguments"]) // 4)
        else:
            if last.get("role") == "tool":
                text = f"Tool result: {last_text}"
            else:
                images = content_images(last.get("content"))
                text = (f"I see {len(images)} image(s). " if images else "") + f"Echo: {last_text}"
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
        }

        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_call is not None:
                message["tool_calls"] = [tool_call]
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            answer: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            if profile.prompt_filter:
                choice["content_filter_results"] = CONTENT_FILTER_SAFE
                answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_SAFE}]
            if profile.name == "groq":
                answer["x_groq"] = {"id": "req_01jfake"}
            return self._send_json(rec, 200, answer)

        deltas: list[dict] = []
        if tool_call is not None:
            args = tool_call["function"]["arguments"]
            if profile.name == "mistral":
                # Mistral sends each call whole in one delta.
                deltas.append({"role": "assistant", "content": ""})
                deltas.append({"content": "", "tool_calls": [dict(tool_call, index=0)]})
            else:
                first = {"index": 0, "id": tool_call["id"], "type": "function", "function": {"name": tool_call["function"]["name"], "arguments": ""}}
                deltas.append({"role": "assistant", "content": None, "tool_calls": [first]})
                for i in range(0, len(args), 6):
                    deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 6]}}]})
        else:
            deltas.append({"role": "assistant", "content": ""})
            for i, word in enumerate(text.split(" ")):
                deltas.append({"content": word if i == 0 else " " + word})
        return self._send_sse(rec, self._stream_events(completion_id, model, deltas, finish, usage, include_usage))

    def _stream_events(
        self, completion_id: str, model: str, deltas: list[dict], finish: str, usage: dict, include_usage: bool
    ) -> list[Any]:
        profile = self.fake.profile

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            if profile.prompt_filter:
                choice["content_filter_results"] = CONTENT_FILTER_SAFE if delta.get("content") else {}
            if profile.name == "together":
                choice["text"] = delta.get("content") or ""
                choice["seed"] = None
                delta.setdefault("token_id", 791)
            return {"id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model, "choices": [choice]}

        events: list[Any] = []
        if profile.prompt_filter:
            events.append(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": CONTENT_FILTER_SAFE}],
                }
            )
        if profile.name == "mistral" and finish == "tool_calls":
            # The whole call and the finish share the last chunk.
            body_chunks = [chunk(deltas[0]), chunk(deltas[1], finish)]
        else:
            body_chunks = [chunk(d) for d in deltas] + [chunk({}, finish)]
        total_completion = usage["completion_tokens"]
        for i, c in enumerate(body_chunks):
            last = i == len(body_chunks) - 1
            if profile.stream_usage == "every":
                done = total_completion if last else min(i + 1, total_completion)
                c["usage"] = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": done, "total_tokens": usage["prompt_tokens"] + done}
            elif profile.stream_usage == "finish":
                c["usage"] = usage if last else None
            elif profile.stream_usage == "x_groq":
                if i == 0:
                    c["x_groq"] = {"id": "req_01jfake"}
                if last:
                    c["x_groq"] = {"id": "req_01jfake", "usage": dict(usage, queue_time=0.012, total_time=0.05)}
            events.append(c)
        if profile.stream_usage == "chunk" and include_usage:
            events.append({"id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model, "choices": [], "usage": usage})
        if profile.done_marker:
            events.append("[DONE]")
        return events

    # -- embeddings -------------------------------------------------------

    def _embeddings(self, rec: RecordedRequest, body: dict, target: str) -> None:
        profile = self.fake.profile
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
            raise UpstreamError(400, error_body(profile, 400, "input must be a non-empty string or list of strings"))
        dimensions = body.get("dimensions", body.get("output_dimension"))
        tokens = sum(count_tokens(t) for t in inputs)
        answer: dict[str, Any] = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": vector_for(t, dimensions)} for i, t in enumerate(inputs)],
            "model": body.get("model") or target,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if profile.name in ("mistral", "databricks"):
            answer["id"] = self.fake.next_id("emb-")
        return self._send_json(rec, 200, answer)
