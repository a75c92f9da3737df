"""A fake Amazon Bedrock runtime for the end-to-end tests.

It listens on 127.0.0.1, records every request (method, raw path, headers,
raw body) and speaks the real protocol:

- Authentication: AWS Signature Version 4, verified by recomputing the
  signature independently here (hashlib/hmac, no AWS library) from the
  request as received: canonical URI = the received (already
  percent-encoded) path URI-encoded once more, as AWS does for every service
  but S3; the signed headers' received values; SHA-256 of the received body;
  the credential scope (date, region, service `bedrock`). Unknown access key
  or session token → 403 UnrecognizedClientException; wrong signature →
  403 InvalidSignatureException; clock skew over 5 minutes → 403
  InvalidSignatureException (Signature expired).
- `POST /model/{modelId}/converse`: the Converse JSON API (validated: roles
  alternate, content blocks have one known member, toolUse/toolResult need a
  toolConfig, images carry base64 bytes of an allowed format, Claude's
  thinking refuses a temperature other than 1, a topP below 0.95, a top_k;
  Nova 2 Lite's reasoningConfig and gpt-oss's reasoning_effort are checked
  as `reasoning_fields_error` says...); a model that reasons answers a
  `reasoningContent` block first, as `reasoning_of` says.
- `POST /model/{modelId}/converse-stream`: the same answer as an AWS binary
  event stream (`application/vnd.amazon.eventstream`: prelude with lengths
  and CRC32, typed headers, JSON payload, message CRC32, all computed with
  zlib.crc32), written in many small writes cut mid-frame.
- `POST /model/{modelId}/count-tokens` (CountTokens) with
  `{"input": {"converse": …}}` (messages, system, toolConfig,
  additionalModelRequestFields; validated like Converse) for Claude models
  (others: ValidationException), answering `{"inputTokens": N}`, N counted
  like Converse's usage.
- `POST /model/{modelId}/invoke` for embedding models: Titan
  (`inputText` → `embedding`) and Cohere (`texts` → `embeddings.float`).
- Model ids in the path must have their `:` percent-encoded (`%3A`), as the
  AWS SDKs send them.

Answers are computed from the request, like the other fakes: "Echo: <last
user text>" ("I see N image(s). " first when the last user turn has images),
"Tool result: <text>" after tool results, a toolUse when tools are offered
(the forced one for toolChoice.tool), maxTokens cuts the answer to that many
words (stopReason max_tokens). With structured output (`outputConfig.
textFormat` of type json_schema, its schema a JSON string, validated as
Bedrock does), the text is JSON that follows the schema. Models named below
force errors.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import itertools
import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import fake_server
from fake_anthropic import awkward_chunks, instance_of, thinking_sampling_error

SERVICE = "bedrock"
MAX_SKEW_SECONDS = 300

NOVA_2_MODEL = "us.amazon.nova-2-lite-v1:0"
GPT_OSS_MODEL = "openai.gpt-oss-120b-1:0"
REASONING_LEVELS = ("low", "medium", "high")
def converse_input_tokens(body: dict) -> int:
    """A Converse request's input tokens: its system prompt's and messages' words."""
    system_text = blocks_text(body.get("system") or [])
    return count_tokens(system_text) + sum(count_tokens(blocks_text(m["content"])) for m in body["messages"])


CHAT_MODELS = {
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "amazon.nova-lite-v1:0",
    NOVA_2_MODEL,
    GPT_OSS_MODEL,
}
THROTTLED_MODEL = "anthropic.claude-throttled-v1:0"
STREAM_THROTTLED_MODEL = "anthropic.claude-stream-throttled-v1:0"
DENIED_MODEL = "anthropic.claude-denied-v1:0"
TITAN_MODEL = "amazon.titan-embed-text-v2:0"
COHERE_MODEL = "cohere.embed-english-v3"

CONVERSE_FIELDS = {
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "additionalModelRequestFields",
    "guardrailConfig",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
    "outputConfig",
}
INFERENCE_FIELDS = {"maxTokens", "temperature", "topP", "stopSequences"}
BLOCK_TYPES = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "reasoningContent"}
IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}


def output_schema(body: dict) -> dict | None:
    """The schema of Converse structured output, or None; raises on a
    malformed `outputConfig` (the schema must be a JSON string of an object)."""
    config = body.get("outputConfig")
    if config is None:
        return None
    text_format = config["textFormat"]
    if text_format["type"] != "json_schema":
        raise ValueError(f"unknown type {text_format['type']!r}")
    json_schema = text_format["structure"]["jsonSchema"]
    if not isinstance(json_schema["schema"], str):
        raise TypeError("jsonSchema.schema must be a string")
    if not isinstance(json_schema.get("name", ""), str):
        raise TypeError("jsonSchema.name must be a string")
    schema = json.loads(json_schema["schema"])
    if not isinstance(schema, dict):
        raise TypeError("jsonSchema.schema must be a JSON object")
    return schema


def reasoning_fields_error(model: str, body: dict) -> str | None:
    """Why Bedrock would refuse the reasoning fields of the model-specific
    request fields: Nova 2 Lite's `reasoningConfig` (other models refuse
    it; at "high" no maxTokens, temperature or topP), gpt-oss's
    `reasoning_effort`."""
    additional = body.get("additionalModelRequestFields") or {}
    inference = body.get("inferenceConfig") or {}
    config = additional.get("reasoningConfig")
    if config is not None:
        if model != NOVA_2_MODEL:
            return "Malformed input request: the provided reasoning config value is invalid"
        if config.get("type") not in ("enabled", "disabled"):
            return "reasoningConfig.type must be enabled or disabled"
        effort = config.get("maxReasoningEffort")
        if config["type"] == "enabled" and effort not in REASONING_LEVELS:
            return f"reasoningConfig.maxReasoningEffort must be one of {REASONING_LEVELS}"
        if effort == "high" and set(inference) & {"maxTokens", "temperature", "topP"}:
            return "maxTokens, temperature and topP must not be set with maxReasoningEffort high"
    effort = additional.get("reasoning_effort")
    if effort is not None and (model != GPT_OSS_MODEL or effort not in REASONING_LEVELS):
        return f"Malformed input request: reasoning_effort {effort!r} is not supported"
    return None


def betas_error(model: str, body: dict) -> str | None:
    """Why Bedrock would refuse `anthropic_beta` in the model-specific
    request fields: only Claude takes it, as a list of beta names."""
    betas = (body.get("additionalModelRequestFields") or {}).get("anthropic_beta")
    if betas is None:
        return None
    if "anthropic.claude" not in model:
        return "Malformed input request: extraneous key [anthropic_beta] is not permitted"
    if not isinstance(betas, list) or not betas or not all(isinstance(b, str) and b for b in betas):
        return "Malformed input request: anthropic_beta must be a list of beta names"
    return None


def reasoning_of(model: str, body: dict, user_text: str) -> dict | None:
    """The `reasoningText` a model answers before its text: Claude with
    thinking enabled, signed; Nova 2 Lite with reasoning enabled, redacted
    as Nova 2 Lite always answers it; gpt-oss, which always reasons,
    unsigned. None when the model does not reason."""
    additional = body.get("additionalModelRequestFields") or {}
    if "anthropic.claude" in model and (additional.get("thinking") or {}).get("type") == "enabled":
        digest = hashlib.sha256(user_text.encode()).digest()
        return {"text": f"The user wrote: {user_text}.", "signature": base64.b64encode(b"\x12" + digest).decode()}
    if model == NOVA_2_MODEL and (additional.get("reasoningConfig") or {}).get("type") == "enabled":
        return {"text": "[REDACTED]"}
    if model == GPT_OSS_MODEL:
        return {"text": f"Reasoning about: {user_text}."}
    return None


def count_tokens(text: str) -> int:
    return len(text.split())


def vector_for(text: str, dimensions: int) -> list[float]:
    """The fake's embedding: depends on the text, values exact in float32."""
    head = [len(text) / 4.0, -len(text.split()) / 8.0, 0.5, -1.25, 3.0]
    return (head + [0.0] * dimensions)[:dimensions]


def blocks_text(blocks: list[dict]) -> str:
    return "".join(b["text"] for b in blocks if "text" in b)


# -- SigV4, independently -----------------------------------------------------------------


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def canonical_query(query: str) -> str:
    pairs = []
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def expected_signature(
    method: str, raw_path: str, query: str, headers: dict[str, list[str]], signed: list[str], body: bytes,
    secret: str, amz_date: str, region: str,
) -> tuple[str, str]:
    """(signature, canonical request) AWS would compute for this request."""
    canonical_uri = quote(raw_path or "/", safe="/~")
    lines = []
    for name in signed:
        values = [" ".join(v.split()) for v in headers.get(name, [])]
        lines.append(f"{name}:{','.join(values)}\n")
    canonical = "\n".join(
        [method, canonical_uri, canonical_query(query), "".join(lines), ";".join(signed), hashlib.sha256(body).hexdigest()]
    )
    scope = f"{amz_date[:8]}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, amz_date[:8], region, SERVICE)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), canonical


# -- event stream, independently ---------------------------------------------------------------


def _header_bytes(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message with string headers."""
    hdrs = b"".join(_header_bytes(k, v) for k, v in headers.items())
    total = 12 + len(hdrs) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdrs))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + hdrs + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def event(event_type: str, payload: dict) -> bytes:
    return event_frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload, ensure_ascii=False).encode(),
    )


def exception(exception_type: str, message: str) -> bytes:
    return event_frame(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


# -- the server ---------------------------------------------------------------------------------


@dataclass
class RecordedRequest(fake_server.RecordedRequest):
    model_id: str = ""
    action: str = ""
    canonical_request: str = ""
    response_events: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def raw_path(self) -> str:
        """The path as received and signed: still percent-encoded."""
        return self.path


@dataclass
class Account:
    secret: str
    session_token: str | None = None


class FakeBedrock(fake_server.RecordingServer):
    thread_name = "fake-bedrock"

    def __init__(self, region: str) -> None:
        super().__init__(_Handler)
        self.region = region
        self.accounts: dict[str, Account] = {}
        self._ids = itertools.count(1)

    def add_account(self, access_key_id: str, secret: str, session_token: str | None = None) -> None:
        self.accounts[access_key_id] = Account(secret, session_token)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"


class _Handler(fake_server.RecordingHandler):
    fake: FakeBedrock
    server_version = "fake-bedrock/1.0"
    json_headers = {"x-amzn-RequestId": "0f9a2c4e-fake-4b7e-9d1f-request"}

    def _error(self, rec: RecordedRequest, status: int, error_type: str, message: str) -> None:
        # Bedrock's REST-JSON errors: the type in a header, {"message"} body.
        return self._send_json(
            rec,
            status,
            {"message": message},
            {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
        )

    def _send_event_stream(self, rec: RecordedRequest, frames: list[bytes]) -> None:
        rec.response_status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", "0f9a2c4e-fake-4b7e-9d1f-request")
        self.end_headers()
        for piece in awkward_chunks(b"".join(frames)):
            self._write_chunk(piece)
            time.sleep(0.001)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- authentication ----------------------------------------------------------------

    def _authenticate(self, rec: RecordedRequest, raw_path: str, query: str) -> bool:
        """Verifies SigV4; answers the error and returns False when it fails."""
        auth = self.headers.get("Authorization") or ""
        prefix = "AWS4-HMAC-SHA256 "
        if not auth.startswith(prefix):
            self._error(rec, 403, "MissingAuthenticationTokenException", "Missing Authentication Token")
            return False
        parts = dict(p.strip().split("=", 1) for p in auth[len(prefix) :].split(",") if "=" in p)
        try:
            access_key, date, region, service, terminal = parts["Credential"].split("/")
            signed = parts["SignedHeaders"].split(";")
            signature = parts["Signature"]
        except (KeyError, ValueError):
            self._error(rec, 400, "IncompleteSignatureException", "Authorization header requires Credential, SignedHeaders and Signature.")
            return False
        account = self.fake.accounts.get(access_key)
        if account is None or self.headers.get("x-amz-security-token") != account.session_token:
            self._error(rec, 403, "UnrecognizedClientException", "The security token included in the request is invalid.")
            return False
        amz_date = self.headers.get("x-amz-date") or ""
        if "host" not in signed or "x-amz-date" not in signed or signed != sorted(signed):
            self._error(rec, 403, "InvalidSignatureException", "host and x-amz-date must be signed, names sorted.")
            return False
        if account.session_token is not None and "x-amz-security-token" not in signed:
            self._error(rec, 403, "InvalidSignatureException", "x-amz-security-token must be signed.")
            return False
        if (region, service, terminal, date) != (self.fake.region, SERVICE, "aws4_request", amz_date[:8]):
            self._error(
                rec, 403, "InvalidSignatureException",
                f"Credential should be scoped to a valid region and service: {date}/{region}/{service}/{terminal}",
            )
            return False
        try:
            sent_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            self._error(rec, 403, "InvalidSignatureException", f"Invalid X-Amz-Date {amz_date!r}")
            return False
        if abs(time.time() - sent_at.timestamp()) > MAX_SKEW_SECONDS:
            self._error(rec, 403, "InvalidSignatureException", "Signature expired: the request time is too skewed.")
            return False
        content_sha = self.headers.get("x-amz-content-sha256")
        if content_sha is not None and content_sha != hashlib.sha256(rec.body).hexdigest():
            self._error(rec, 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
            return False
        received: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            received.setdefault(name.lower(), []).append(value)
        expected, canonical = expected_signature(
            self.command, raw_path, query, received, signed, rec.body, account.secret, amz_date, region
        )
        rec.canonical_request = canonical
        if not hmac.compare_digest(expected, signature):
            self._error(
                rec, 403, "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            )
            return False
        return True

    # -- routing -------------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        self.fake._record(rec)
        if not self._authenticate(rec, url.path, url.query):
            return
        segments = url.path.split("/")
        if len(segments) != 4 or segments[1] != "model" or segments[3] not in ("converse", "converse-stream", "invoke", "count-tokens"):
            return self._error(rec, 404, "UnknownOperationException", f"Unknown operation {url.path}")
        raw_model = segments[2]
        rec.model_id = unquote(raw_model)
        rec.action = segments[3]
        if ":" in raw_model:
            # The SDKs always encode it; a raw ':' shows the caller did not.
            return self._error(rec, 400, "ValidationException", "The model identifier in the path must be URI-encoded.")
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._error(rec, 400, "ValidationException", "Content-Type must be application/json.")
        try:
            body = json.loads(rec.body)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return self._error(rec, 400, "ValidationException", "Malformed input request, please reformat your input and try again.")

        model = rec.model_id
        if model == THROTTLED_MODEL:
            return self._error(rec, 429, "ThrottlingException", "Too many requests, please wait before trying again.")
        if model == DENIED_MODEL:
            return self._error(rec, 403, "AccessDeniedException", "You don't have access to the model with the specified model ID.")
        if rec.action == "invoke":
            if model == TITAN_MODEL:
                return self._titan(rec, body)
            if model == COHERE_MODEL:
                return self._cohere(rec, body)
            return self._error(rec, 400, "ValidationException", "The provided model identifier is invalid.")
        if model not in CHAT_MODELS and model != STREAM_THROTTLED_MODEL:
            return self._error(rec, 400, "ValidationException", "The provided model identifier is invalid.")
        if rec.action == "count-tokens":
            return self._count_tokens(rec, body)
        return self._converse(rec, body, stream=rec.action == "converse-stream")

    def _count_tokens(self, rec: RecordedRequest, body: dict) -> None:
        if "anthropic.claude" not in rec.model_id:
            return self._error(rec, 400, "ValidationException", "The provided model doesn't support counting tokens.")
        converse = (body.get("input") or {}).get("converse") if set(body) == {"input"} else None
        if not isinstance(converse, dict):
            return self._error(rec, 400, "ValidationException", "input must hold exactly one of converse or invokeModel.")
        unknown = set(converse) - {"messages", "system", "toolConfig", "additionalModelRequestFields"}
        problem = (
            f"Unexpected field(s): {sorted(unknown)}"
            if unknown
            else self._validate_converse(converse) or betas_error(rec.model_id, converse)
        )
        if problem:
            return self._error(rec, 400, "ValidationException", problem)
        return self._send_json(rec, 200, {"inputTokens": converse_input_tokens(converse)})

    # -- converse --------------------------------------------------------------------------

    def _validate_converse(self, body: dict) -> str | None:
        unknown = set(body) - CONVERSE_FIELDS
        if unknown:
            return f"Unexpected field(s): {sorted(unknown)}"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "A conversation must start with a user message."
        roles = [m.get("role") for m in messages]
        if roles[0] != "user" or any(r not in ("user", "assistant") for r in roles):
            return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
        if any(a == b for a, b in zip(roles, roles[1:])):
            return "A conversation must alternate between user and assistant roles."
        has_tool_blocks = False
        for m in messages:
            content = m.get("content")
            if not isinstance(content, list) or not content:
                return "The content field in the Message object is empty."
            for block in content:
                keys = set(block) if isinstance(block, dict) else set()
                if len(keys) != 1 or not keys <= BLOCK_TYPES:
                    return f"Each content block must have exactly one known member, got {sorted(keys)}"
                if "text" in block and not str(block["text"]).strip():
                    return "The text field in the ContentBlock object is blank."
                if "image" in block:
                    image = block["image"]
                    if image.get("format") not in IMAGE_FORMATS:
                        return f"Invalid image format {image.get('format')!r}"
                    try:
                        base64.b64decode(image["source"]["bytes"], validate=True)
                    except (KeyError, TypeError, binascii.Error):
                        return "The image bytes must be base64."
                if "toolUse" in block or "toolResult" in block:
                    has_tool_blocks = True
                if "toolUse" in block and not isinstance(block["toolUse"].get("input"), dict):
                    return "toolUse.input must be an object."
        if has_tool_blocks and "toolConfig" not in body:
            return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        inference = body.get("inferenceConfig", {})
        if set(inference) - INFERENCE_FIELDS:
            return f"Unexpected inferenceConfig field(s): {sorted(set(inference) - INFERENCE_FIELDS)}"
        for tool in (body.get("toolConfig") or {}).get("tools", []):
            spec = tool.get("toolSpec") or {}
            if not spec.get("name") or not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
                return "Each tool needs toolSpec.name and toolSpec.inputSchema.json."
        if "outputConfig" in body:
            try:
                output_schema(body)
            except (KeyError, TypeError, ValueError) as e:
                return f"Invalid outputConfig.textFormat: {e}"
        additional = body.get("additionalModelRequestFields") or {}
        if (additional.get("thinking") or {}).get("type") == "enabled":
            return thinking_sampling_error(inference.get("temperature"), inference.get("topP"), additional.get("top_k"))
        return None

    def _converse(self, rec: RecordedRequest, body: dict, stream: bool) -> None:
        problem = (
            self._validate_converse(body)
            or reasoning_fields_error(rec.model_id, body)
            or betas_error(rec.model_id, body)
        )
        if problem:
            return self._error(rec, 400, "ValidationException", problem)
        messages = body["messages"]
        last = messages[-1]
        results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
        user_text = blocks_text(last["content"])
        tool_config = body.get("toolConfig") or {}
        tools = [t["toolSpec"] for t in tool_config.get("tools", [])]
        choice = tool_config.get("toolChoice") or {"auto": {}}
        input_tokens = converse_input_tokens(body)
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")

        tool_use = None
        if tools and not results and last["role"] == "user":
            chosen = tools[0]
            if "tool" in choice:
                chosen = next((t for t in tools if t["name"] == choice["tool"]["name"]), chosen)
            schema = chosen["inputSchema"]["json"]
            arg = ((schema.get("required") or []) + list((schema.get("properties") or {}).keys()) + ["input"])[0]
            tool_use = {"toolUseId": self.fake.next_id("tooluse_"), "name": chosen["name"], "input": {arg: user_text}}

        if tool_use is not None:
            content = [{"toolUse": tool_use}]
            stop_reason = "tool_use"
            output_tokens = max(1, len(json.dumps(tool_use["input"])) // 4)
        else:
            if results:
                text = "Tool result: " + " | ".join(blocks_text(r.get("content") or []) for r in results)
            else:
                images = [b for b in last["content"] if "image" in b]
                prefix = f"I see {len(images)} image(s). " if images else ""
                text = f"{prefix}Echo: {user_text}"
            stop_reason = "end_turn"
            schema = output_schema(body)
            if schema is not None:
                text = json.dumps(instance_of(schema, user_text))
            words = text.split(" ")
            if isinstance(max_tokens, int) and max_tokens < len(words) and schema is None:
                text = " ".join(words[:max_tokens])
                stop_reason = "max_tokens"
            content = [{"text": text}]
            output_tokens = count_tokens(text)
        reasoning = reasoning_of(rec.model_id, body, user_text)
        if reasoning is not None:
            content.insert(0, {"reasoningContent": {"reasoningText": reasoning}})
            output_tokens += count_tokens(reasoning["text"])
        usage = {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}

        if not stream:
            return self._send_json(
                rec,
                200,
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": stop_reason,
                    "usage": usage,
                    "metrics": {"latencyMs": 42},
                },
            )

        pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        events: list[tuple[str, dict]] = [("messageStart", {"p": pad[:17], "role": "assistant"})]
        if rec.model_id == STREAM_THROTTLED_MODEL:
            events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Partial"}, "p": pad[:5]}))
            rec.response_events = events
            frames = [event(t, p) for t, p in events]
            frames.append(exception("throttlingException", "Too many tokens, please wait before trying again."))
            return self._send_event_stream(rec, frames)
        block = 0
        if reasoning is not None:
            text = reasoning["text"]
            for i in range(0, len(text), 9):
                events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": text[i : i + 9]}}, "p": pad[:5]}))
            if "signature" in reasoning:
                events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": reasoning["signature"]}}, "p": pad[:3]}))
            events.append(("contentBlockStop", {"contentBlockIndex": 0, "p": pad[:11]}))
            block = 1
        if tool_use is not None:
            events.append(
                (
                    "contentBlockStart",
                    {"contentBlockIndex": block, "p": pad[:9], "start": {"toolUse": {"name": tool_use["name"], "toolUseId": tool_use["toolUseId"]}}},
                )
            )
            arguments = json.dumps(tool_use["input"])
            for i in range(0, len(arguments), 7):
                events.append(("contentBlockDelta", {"contentBlockIndex": block, "delta": {"toolUse": {"input": arguments[i : i + 7]}}, "p": pad[: i % 13]}))
        else:
            for i, word in enumerate(content[block]["text"].split(" ")):
                piece = word if i == 0 else " " + word
                events.append(("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": piece}, "p": pad[: 3 + i % 11]}))
        events.append(("contentBlockStop", {"contentBlockIndex": block, "p": pad[:23]}))
        events.append(("messageStop", {"p": pad[:31], "stopReason": stop_reason}))
        events.append(("metadata", {"metrics": {"latencyMs": 42}, "p": pad[:7], "usage": usage}))
        rec.response_events = events
        return self._send_event_stream(rec, [event(t, p) for t, p in events])

    # -- embeddings ------------------------------------------------------------------------

    def _titan(self, rec: RecordedRequest, body: dict) -> None:
        unknown = set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
        if unknown:
            return self._error(rec, 400, "ValidationException", f"Malformed input request: extraneous key {sorted(unknown)} is not permitted")
        text = body.get("inputText")
        if not isinstance(text, str) or not text:
            return self._error(rec, 400, "ValidationException", "Malformed input request: inputText is required")
        dimensions = body.get("dimensions", 1024)
        if dimensions not in (256, 512, 1024):
            return self._error(rec, 400, "ValidationException", "Malformed input request: dimensions must be 256, 512 or 1024")
        vector = vector_for(text, dimensions)
        tokens = count_tokens(text)
        return self._send_json(
            rec,
            200,
            {"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": tokens},
            {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)},
        )

    def _cohere(self, rec: RecordedRequest, body: dict) -> None:
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or len(texts) > 96:
            return self._error(rec, 400, "ValidationException", "Malformed input request: texts must hold 1 to 96 strings")
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
            return self._error(rec, 400, "ValidationException", "Malformed input request: input_type is required")
        vectors = [vector_for(t, 1024) for t in texts]
        tokens = sum(count_tokens(t) for t in texts)
        if body.get("embedding_types"):
            answer = {"id": self.fake.next_id("emb-"), "embeddings": {"float": vectors}, "response_type": "embeddings_by_type", "texts": texts}
        else:
            answer = {"id": self.fake.next_id("emb-"), "embeddings": vectors, "response_type": "embeddings_floats", "texts": texts}
        return self._send_json(rec, 200, answer, {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)})
