"""A fake Google Gemini API (generativelanguage v1beta) for the end-to-end
tests, plus the generateContent "brain" the fake Vertex AI reuses.

It listens on 127.0.0.1 with real sockets, records every request (method,
path, query, headers, raw body), validates what it gets the way the real API
does (the `x-goog-api-key` header, the `/v1beta/models/<model>:<method>`
paths, `alt=sse` on streams, the request JSON: known fields only, roles,
one datum per part, function responses matching the calls of the previous
model turn) and answers with the real shapes: `GenerateContentResponse`
objects, SSE streams of them (CRLF-framed like Google's, written in several
chunked writes cut at awkward byte offsets: mid-JSON, mid-CRLF, inside a
UTF-8 sequence), `functionCall` parts, `usageMetadata`, batch embeddings,
and Google error objects (429 RESOURCE_EXHAUSTED with a RetryInfo delay, a
bad key as 400 API_KEY_INVALID like the real API).

Answers are computed from the request so tests can tell what came through:
- chat: "Echo: <last user text>" (prefixed "I see N image(s). " when the turn
  has inlineData/fileData parts); after function responses:
  "Tool result: <response JSON>".
- if tools are declared (and the function calling mode is not NONE) and the
  last turn is the user's text, the model calls a function: the first
  allowed one, with {<first required parameter>: <user text>}.
- generationConfig.maxOutputTokens cuts the answer to that many words,
  finishReason MAX_TOKENS.
- model "force-<status>" answers that HTTP error.
- image models ("*-image*") answer "Here is your image of: <last user
  text>" and a PNG (`inlineData`, IMAGE_PNG); Gemini 3 signs the image.
- models "gemini-3*" asked to include thoughts answer with an unsigned
  thought summary first ("Thinking about: <last user text>"), streamed in
  pieces like the text.
- models "gemini-3*" sign the first function call of an answer with a
  `thoughtSignature` (call_signature()) and, like the real Gemini 3, refuse
  a current turn whose first call comes back unsigned or with another
  signature (Google's documented "skip_thought_signature_validator" is
  accepted, as by the real API).
- countTokens takes `contents` or a `generateContentRequest` (whose model
  must be the URL's) and answers the words of the contents and system
  instruction as totalTokens.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import fake_server

RETRY_DELAY_SECONDS = 7
MODEL_VERSION_SUFFIX = ""  # modelVersion echoes the requested model

# Fields of GenerateContentRequest the real API knows (an unknown one is a
# 400 "Unknown name").
REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
    "model",
}
GENERATION_CONFIG_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
    "speechConfig",
}
PART_DATA_FIELDS = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
}
PART_META_FIELDS = {"thought", "thoughtSignature", "videoMetadata"}
SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}


SKIP_SIGNATURE = "skip_thought_signature_validator"

# The image an image model draws: a 1x1 PNG.
IMAGE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def signs_calls(model: str) -> bool:
    return model.startswith("gemini-3")


def call_signature(call: dict) -> str:
    """What the fake signs a function call with: base64 like the real one
    (which is opaque), derived from the call so a replay can be checked."""
    digest = hashlib.sha256(json.dumps([call.get("name"), call.get("args") or {}], sort_keys=True).encode()).digest()
    return base64.b64encode(digest).decode()


def signature_errors(model: str, body: dict) -> str | None:
    """Why the real Gemini 3 would refuse the function calls replayed in
    `body`: it checks the model turns of the current turn (after the last
    user content that is not only function responses)."""
    if not signs_calls(model):
        return None
    contents = body["contents"]
    start = 0
    for i, content in enumerate(contents):
        if content.get("role") == "user" and any("functionResponse" not in p for p in content["parts"]):
            start = i + 1
    for i in range(start, len(contents)):
        content = contents[i]
        if content.get("role") != "model":
            continue
        for j, part in enumerate(content["parts"]):
            if "functionCall" not in part:
                continue
            signature = part.get("thoughtSignature")
            if signature is None:
                return (
                    f"Function call `{part['functionCall'].get('name')}` in the {i + 1}. content block is "
                    f"missing a `thought_signature`. Learn more: https://docs.cloud.google.com/vertex-ai/"
                    f"generative-ai/docs/thought-signatures"
                )
            if signature not in (SKIP_SIGNATURE, call_signature(part["functionCall"])):
                return f"Corrupted thought signature at contents[{i}].parts[{j}]."
            break  # only the first call of a step is signed
    return None


class ApiError(Exception):
    """An error the fake answers with Google's error JSON."""

    def __init__(self, code: int, status: str, message: str, details: list | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def vector_for(text: str, dimensions: int | None = None) -> list[float]:
    """The fake's embedding of `text`: depends on the text and uses only
    values exact in float32."""
    vec = [len(text) / 4.0, -len(text.split()) / 8.0, 0.5, -1.25, 3.0, 0.0, 0.25, 1.0]
    return vec[:dimensions] if dimensions else vec


def count_tokens(text: str) -> int:
    return len(text.split())


def parts_text(parts: list) -> str:
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought"))


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    query: str = ""
    response_events: list[Any] = field(default_factory=list)

    @property
    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.query)


# -- request validation --------------------------------------------------------


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise invalid(f"Invalid value at '{where}': expected a Schema object")
    kind = schema.get("type")
    if kind is not None and kind not in SCHEMA_TYPES:
        raise invalid(f"Invalid value at '{where}.type' ({kind!r}), expected one of {sorted(SCHEMA_TYPES)}")
    for name, sub in (schema.get("properties") or {}).items():
        _check_schema(sub, f"{where}.properties[{name}]")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")


THINKING_CONFIG_FIELDS = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
THINKING_LEVELS = {"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"}


def _thinking_generation(model: str) -> tuple[int, bool]:
    """(major version, is Pro) of a Gemini model name; major 0 when not
    a numbered Gemini model."""
    match = re.match(r"gemini-(\d+)", model)
    return (int(match[1]) if match else 0), "-pro" in model


def _thinking_fields(thinking: dict) -> dict:
    """thinkingConfig by camelCase names: proto JSON takes a field by its
    camelCase name or its proto name (google-genai sends thinking_budget,
    thinking_level, include_thoughts)."""
    return {re.sub(r"_([a-z])", lambda m: m[1].upper(), key): value for key, value in thinking.items()}


def includes_thoughts(body: dict) -> bool:
    thinking = (body.get("generationConfig") or {}).get("thinkingConfig")
    return isinstance(thinking, dict) and _thinking_fields(thinking).get("includeThoughts") is True


def _check_thinking_config(thinking: Any, model: str = "") -> None:
    """generationConfig.thinkingConfig as the real API checks it, by model:
    Gemini 2.5 takes a budget (Pro cannot turn thinking off), Gemini 3 and
    later a level and cannot turn thinking off either (Pro: LOW or HIGH)."""
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise invalid("Invalid value at 'generation_config.thinking_config': expected an object")
    thinking = _thinking_fields(thinking)
    for key in thinking:
        if key not in THINKING_CONFIG_FIELDS:
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config.thinking_config\': Cannot find field.'
            )
    budget = thinking.get("thinkingBudget")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < -1):
        raise invalid(f"Invalid value at 'generation_config.thinking_config.thinking_budget' ({budget!r})")
    level = thinking.get("thinkingLevel")
    if level is not None and level not in THINKING_LEVELS:
        raise invalid(f"Invalid value at 'generation_config.thinking_config.thinking_level' ({level!r})")
    include = thinking.get("includeThoughts")
    if include is not None and not isinstance(include, bool):
        raise invalid(f"Invalid value at 'generation_config.thinking_config.include_thoughts' ({include!r})")
    if budget is not None and level is not None:
        raise invalid("You can only set only one of thinking budget and thinking level.")
    major, pro = _thinking_generation(model)
    if budget == 0 and (major >= 3 or model.startswith("gemini-2.5-pro")):
        raise invalid("Budget 0 is invalid. This model only works in thinking mode.")
    if level is not None and 0 < major < 3:
        raise invalid("Thinking level is not supported for this model.")
    if major >= 3 and pro and level in ("MINIMAL", "MEDIUM"):
        raise invalid(f"Thinking level {level} is not supported for this model.")


def validate_generate_content(body: Any, model: str = "") -> None:
    """Raises ApiError for what the real API rejects (of `model`)."""
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    for key in body:
        if key not in REQUEST_FIELDS:
            raise invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
    previous_calls = 0
    for i, content in enumerate(contents):
        role = content.get("role")
        if role not in ("user", "model"):
            raise invalid(f"Please use a valid role: user, model. (contents[{i}].role = {role!r})")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
        for j, part in enumerate(parts):
            data = [k for k in part if k in PART_DATA_FIELDS]
            unknown = [k for k in part if k not in PART_DATA_FIELDS | PART_META_FIELDS]
            if unknown:
                raise invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'contents[{i}].parts[{j}]\'')
            if len(data) != 1:
                raise invalid(f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field\n")
            if "inlineData" in part:
                inline = part["inlineData"]
                if not inline.get("mimeType") or not inline.get("data"):
                    raise invalid(f"contents[{i}].parts[{j}].inlineData needs mimeType and data")
            if "functionCall" in part and role != "model":
                raise invalid("functionCall parts belong to model turns")
            if "functionResponse" in part:
                if role != "user":
                    raise invalid("functionResponse parts belong to user turns")
                fr = part["functionResponse"]
                if not fr.get("name") or not isinstance(fr.get("response"), dict):
                    raise invalid(f"contents[{i}].parts[{j}].functionResponse needs a name and a response object")
        calls = sum(1 for p in parts if "functionCall" in p)
        responses = sum(1 for p in parts if "functionResponse" in p)
        if responses and responses != previous_calls:
            raise invalid(
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn."
            )
        previous_calls = calls if role == "model" else 0
    system = body.get("systemInstruction")
    if system is not None and not (isinstance(system, dict) and isinstance(system.get("parts"), list)):
        raise invalid("systemInstruction must be a Content with parts")
    config = body.get("generationConfig") or {}
    for key in config:
        if key not in GENERATION_CONFIG_FIELDS:
            raise invalid(f'Invalid JSON payload received. Unknown name "{key}" at \'generation_config\': Cannot find field.')
    _check_thinking_config(config.get("thinkingConfig"), model)
    for t, tool in enumerate(body.get("tools") or []):
        for d, decl in enumerate(tool.get("functionDeclarations") or []):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", decl.get("name", "")):
                raise invalid(f"* GenerateContentRequest.tools[{t}].function_declarations[{d}].name: Invalid function name.")
            if "parameters" in decl:
                _check_schema(decl["parameters"], f"tools[{t}].function_declarations[{d}].parameters")
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    if mode is not None and mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
        raise invalid(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})")


# -- answers -------------------------------------------------------------------


class Brain:
    """Computes GenerateContentResponses (whole or as stream chunks) from a
    request; shared by the Gemini and Vertex fakes."""

    def __init__(self, extra_response_fields: Callable[[], dict] | None = None):
        self._ids = itertools.count(1)
        self._extra = extra_response_fields or (lambda: {})

    def response_id(self) -> str:
        return f"fakeResp{next(self._ids):05d}{secrets.token_hex(3)}"

    def _plan(self, model: str, body: dict) -> tuple[list[dict], str, int]:
        """The parts of the answer, its finishReason and the prompt size."""
        refused = signature_errors(model, body)
        if refused:
            raise invalid(refused)
        parts, finish, prompt_tokens = self._answer(model, body)
        if signs_calls(model) and includes_thoughts(body):
            user_text = parts_text(body["contents"][-1]["parts"])
            parts = [{"text": f"Thinking about: {user_text}", "thought": True}, *parts]
        return parts, finish, prompt_tokens

    def _answer(self, model: str, body: dict) -> tuple[list[dict], str, int]:
        contents = body["contents"]
        prompt_tokens = sum(count_tokens(parts_text(c["parts"])) for c in contents)
        prompt_tokens += count_tokens(parts_text((body.get("systemInstruction") or {}).get("parts") or []))
        last = contents[-1]
        responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        user_text = parts_text(last["parts"])

        if "-image" in model and not responses:
            image: dict = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(IMAGE_PNG).decode()}}
            if signs_calls(model):
                image["thoughtSignature"] = base64.b64encode(hashlib.sha256(IMAGE_PNG).digest()).decode()
            return [{"text": f"Here is your image of: {user_text}"}, image], "STOP", prompt_tokens
        if responses:
            payload = responses[0]["response"]
            result = payload.get("result", payload.get("output", payload))
            text = f"Tool result: {result if isinstance(result, str) else json.dumps(result)}"
        elif declarations and calling.get("mode") != "NONE" and last["role"] == "user":
            allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declarations]
            decl = next(d for d in declarations if d["name"] == allowed[0])
            params = decl.get("parameters") or {}
            arg = ((params.get("required") or []) + list((params.get("properties") or {}).keys()) + ["input"])[0]
            part: dict = {"functionCall": {"name": decl["name"], "args": {arg: user_text}}}
            if signs_calls(model):
                part["thoughtSignature"] = call_signature(part["functionCall"])
            return [part], "STOP", prompt_tokens
        else:
            images = [p for p in last["parts"] if "inlineData" in p or "fileData" in p]
            prefix = f"I see {len(images)} image(s). " if images else ""
            text = f"{prefix}Echo: {user_text}"
        finish = "STOP"
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        words = text.split(" ")
        if isinstance(limit, int) and 0 < limit < len(words):
            text = " ".join(words[:limit])
            finish = "MAX_TOKENS"
        return [{"text": text}], finish, prompt_tokens

    @staticmethod
    def _usage(prompt: int, output: int) -> dict:
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }

    def generate(self, model: str, body: dict) -> dict:
        parts, finish, prompt = self._plan(model, body)
        output = sum(count_tokens(p.get("text", "")) or 3 for p in parts)
        return {
            "candidates": [
                {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "avgLogprobs": -0.0421, "index": 0}
            ],
            "usageMetadata": self._usage(prompt, output),
            "modelVersion": model,
            "responseId": self.response_id(),
            **self._extra(),
        }

    def stream(self, model: str, body: dict) -> list[dict]:
        """The chunks of streamGenerateContent: text a few words at a time,
        a function call whole, the last chunk with finishReason and the
        final usage."""
        parts, finish, prompt = self._plan(model, body)
        rid = self.response_id()
        chunks: list[dict] = []
        produced = 0

        def chunk(part: dict, last: bool) -> dict:
            candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = finish
            usage = {"promptTokenCount": prompt, "candidatesTokenCount": produced, "totalTokenCount": prompt + produced}
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": rid, **self._extra()}

        pieces: list[dict] = []
        for part in parts:
            if "text" in part:
                words = part["text"].split(" ")
                thought = {"thought": True} if part.get("thought") else {}
                for i in range(0, len(words), 2):
                    piece = " ".join(words[i : i + 2])
                    pieces.append({"text": piece if i == 0 else " " + piece, **thought})
            else:
                pieces.append(part)
        for i, piece in enumerate(pieces):
            produced += count_tokens(piece.get("text", "")) or 3
            chunks.append(chunk(piece, i == len(pieces) - 1))
        return chunks

    @staticmethod
    def count_tokens(body: dict) -> dict:
        """A countTokens answer for a GenerateContentRequest's fields: the
        words of its contents and system instruction."""
        total = sum(count_tokens(parts_text(c["parts"])) for c in body["contents"])
        total += count_tokens(parts_text((body.get("systemInstruction") or {}).get("parts") or []))
        return {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}

    @staticmethod
    def sse_bytes(chunks: list[dict]) -> bytes:
        return b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\r\n\r\n" for c in chunks)


def awkward_cuts(data: bytes) -> list[bytes]:
    """Cuts an SSE body the way a network might: inside the first frame's
    JSON, between the CR and LF of a frame end, inside a UTF-8 sequence,
    and at irregular offsets elsewhere."""
    cuts = {7, len(data) // 3, len(data) - 3}
    crlf = data.find(b"\r\n\r\n")
    if crlf > 0:
        cuts.add(crlf + 1)
        cuts.add(crlf + 3)
    multibyte = next((i for i, b in enumerate(data) if b >= 0xC0), None)
    if multibyte is not None:
        cuts.add(multibyte + 1)
    offsets = sorted(c for c in cuts if 0 < c < len(data))
    pieces, start = [], 0
    for cut in offsets:
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return [p for p in pieces if p]


def forced_error(model: str) -> ApiError | None:
    """The error a `force-<status>` model answers with."""
    if not model.startswith("force-"):
        return None
    status = int(model.removeprefix("force-").split("-")[0] or 500)
    if status == 429:
        return ApiError(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": "10",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_DELAY_SECONDS}s"},
            ],
        )
    if status == 404:
        return ApiError(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, or is not supported for generateContent.")
    if status == 503:
        return ApiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if status >= 500:
        return ApiError(500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting")
    return ApiError(status, "INVALID_ARGUMENT", f"forced error {status}")


# -- HTTP plumbing shared with the Vertex fake ------------------------------------


class FakeServer(fake_server.RecordingServer):
    """Lifecycle and request log of a fake; subclasses route requests."""

    name = "fake-google"

    def __init__(self) -> None:
        super().__init__(type("Handler", (Handler,), {"server_version": f"{self.name}/1.0"}))
        self.thread_name = self.name

    def api_requests(self) -> list[RecordedRequest]:
        return self.requests

    def only_request(self) -> RecordedRequest:
        reqs = self.api_requests()
        assert len(reqs) == 1, f"expected exactly one upstream request, got {[(r.method, r.path) for r in reqs]}"
        return reqs[0]

    def handle(self, h: "Handler", rec: RecordedRequest) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Handler(fake_server.RecordingHandler):
    fake: FakeServer
    json_content_type = "application/json; charset=UTF-8"
    json_headers = {"Vary": "Origin, X-Origin, Referer"}
    json_ensure_ascii = False

    # The name the Gemini and Vertex routes call.
    send_json = fake_server.RecordingHandler._send_json

    def send_error_json(self, rec: RecordedRequest, error: ApiError) -> None:
        self.send_json(rec, error.code, error.body(), error.headers)

    def send_sse(self, rec: RecordedRequest, chunks: list[dict]) -> None:
        rec.response_status = 200
        rec.response_events = list(chunks)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Disposition", "attachment")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for piece in awkward_cuts(Brain.sse_bytes(chunks)):
            self._write_chunk(piece)
            time.sleep(0.01)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _dispatch(self) -> None:
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
            self.fake.handle(self, rec)
        except ApiError as e:
            self.send_error_json(rec, e)

    do_GET = _dispatch
    do_POST = _dispatch


def parse_json_body(rec: RecordedRequest) -> Any:
    if not rec.headers.get("content-type", "").startswith("application/json"):
        raise invalid(f"Invalid Content-Type {rec.headers.get('content-type')!r}; expected application/json")
    try:
        return json.loads(rec.body)
    except ValueError:
        raise invalid("Invalid JSON payload received. Unexpected token.") from None


# -- the Gemini API ---------------------------------------------------------------------

MODEL_PATH = re.compile(r"^/v1beta/models/(?P<model>[A-Za-z0-9._-]+):(?P<method>[A-Za-z]+)$")


class FakeGemini(FakeServer):
    name = "fake-gemini"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.brain = Brain()

    def handle(self, h: Handler, rec: RecordedRequest) -> None:
        if rec.headers.get("x-goog-api-key") != self.api_key:
            # The real API answers a wrong key with 400, not 401.
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        if "key" in rec.query_params:
            raise invalid("the key must travel in the x-goog-api-key header in these tests, not the URL")
        match = MODEL_PATH.match(rec.path)
        if rec.method != "POST" or not match:
            raise ApiError(404, "NOT_FOUND", f"Method not found: {rec.method} {rec.path}")
        model, method = match["model"], match["method"]
        body = parse_json_body(rec)
        error = forced_error(model)
        if error is not None:
            raise error

        if method == "generateContent":
            validate_generate_content(body, model)
            return h.send_json(rec, 200, self.brain.generate(model, body))
        if method == "streamGenerateContent":
            if rec.query_params.get("alt") != ["sse"]:
                raise invalid("this fake only streams with alt=sse")
            validate_generate_content(body, model)
            return h.send_sse(rec, self.brain.stream(model, body))
        if method == "batchEmbedContents":
            return h.send_json(rec, 200, self._embed(model, body))
        if method == "countTokens":
            request = self._count_request(model, body)
            validate_generate_content(request, model)
            return h.send_json(rec, 200, self.brain.count_tokens(request))
        raise ApiError(404, "NOT_FOUND", f"Method {method} not found for models/{model}")

    @staticmethod
    def _count_request(model: str, body: Any) -> dict:
        """The GenerateContentRequest a countTokens body counts: `contents`
        alone, or a whole `generateContentRequest` naming the model."""
        if not isinstance(body, dict) or set(body) - {"contents", "generateContentRequest"}:
            unknown = sorted(set(body) - {"contents", "generateContentRequest"}) if isinstance(body, dict) else ["?"]
            raise invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
        if ("contents" in body) == ("generateContentRequest" in body):
            raise invalid("* CountTokensRequest: exactly one of contents or generate_content_request must be set")
        if "contents" in body:
            return {"contents": body["contents"]}
        inner = body["generateContentRequest"]
        if not isinstance(inner, dict) or inner.get("model") != f"models/{model}":
            raise invalid(
                f"* CountTokensRequest.generate_content_request.model: {inner.get('model') if isinstance(inner, dict) else None!r} "
                f"does not match the model in the URL (models/{model})"
            )
        return inner

    @staticmethod
    def _embed(model: str, body: Any) -> dict:
        requests_ = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests_, list) or not requests_:
            raise invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
        out = []
        for i, req in enumerate(requests_):
            if req.get("model") != f"models/{model}":
                raise invalid(
                    f"* BatchEmbedContentsRequest.requests[{i}].model: the model in the request "
                    f"({req.get('model')}) does not match the model in the URL (models/{model})"
                )
            parts = (req.get("content") or {}).get("parts") or []
            if not parts or not all("text" in p for p in parts):
                raise invalid(f"* BatchEmbedContentsRequest.requests[{i}].content: text parts required")
            out.append({"values": vector_for(parts_text(parts), req.get("outputDimensionality"))})
        return {"embeddings": out}
