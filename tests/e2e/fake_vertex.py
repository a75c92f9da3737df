"""A fake Google Cloud Vertex AI (plus its OAuth token endpoint) for the
end-to-end tests.

The token endpoint (`POST /token`) implements the JWT-bearer grant the way
Google's does: it takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
and an `assertion`, VERIFIES the RS256 signature with the public key of the
service account named by `iss` (registered by the test, which generated the
key pair), checks `kid`, `aud` (the token URI), `scope`, `iat` / `exp` (at
most an hour, not expired), and answers `{"access_token", "expires_in",
"token_type": "Bearer"}` or `{"error": "invalid_grant", ...}`. It counts the
exchanges so tests can assert that tokens are cached.

The API endpoints check `Authorization: Bearer <a token this fake issued>`
(401 UNAUTHENTICATED otherwise, as Vertex answers) and the resource path
`/v1/projects/<project>/locations/<location>/publishers/google/models/<model>:<method>`
(project and location must be the configured ones), then answer like
Vertex: `generateContent`, `streamGenerateContent?alt=sse` (the Gemini
fake's brain, with Vertex's `createTime` / `trafficType` fields),
`countTokens` (the request's fields as they are) and `predict` for text
embeddings.

Claude models live under `publishers/anthropic/models/<model>`: `rawPredict`
and `streamRawPredict` take the Messages API's body without `model` (it is
in the path) and with `"anthropic_version": "vertex-2023-10-16"` in the
body, and answer as the Anthropic fake does (`fake_anthropic.messages_reply`,
Anthropic-shaped errors, the SSE stream, betas in the `anthropic-beta`
header); `count-tokens:rawPredict` takes the
model in the body.

Model Garden's open models answer on the OpenAI-compatible
`/v1/projects/<project>/locations/<location>/endpoints/openapi/chat/completions`,
with the model named `publisher/model` in the body (`max_tokens`;
`max_completion_tokens` is an unknown field there), as the OpenAI fake does
(`fake_openai.chat_reply`, SSE chunks ending in `[DONE]`).
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

import fake_anthropic
import fake_openai

from fake_gemini import (
    ApiError,
    Brain,
    FakeServer,
    Handler,
    RecordedRequest,
    count_tokens,
    forced_error,
    invalid,
    parse_json_body,
    validate_generate_content,
    vector_for,
)

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/token"
TOKEN_LIFETIME = 3599

VERTEX_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/(?P<publisher>google|anthropic)/models/(?P<model>[A-Za-z0-9._@-]+):(?P<method>[A-Za-z]+)$"
)
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
OPENAPI_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/openapi/chat/completions$"
)
MAAS_MODEL = re.compile(r"^[a-z0-9-]+/[A-Za-z0-9._@-]+$")


@dataclass
class Account:
    client_email: str
    private_key_id: str
    public_key: RSAPublicKey


@dataclass
class Grant:
    """One token exchange the fake performed (or refused)."""

    client_email: str
    ok: bool
    access_token: str = ""
    error: str = ""
    claims: dict | None = None
    header: dict | None = None
    form: str = ""  # the raw form body of the token request


class FakeVertex(FakeServer):
    name = "fake-vertex"

    def __init__(self, project: str, location: str) -> None:
        super().__init__()
        self.project = project
        self.location = location
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, str] = {}  # access token -> client_email
        self.grants: list[Grant] = []
        self._grant_lock = threading.Lock()
        self.brain = Brain(
            lambda: {"createTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}
        )
        self._ids = itertools.count(1)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}vrtx_{next(self._ids):06d}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    # -- accounts and tokens ------------------------------------------------

    def add_account(self, client_email: str, private_key_id: str, public_key: RSAPublicKey) -> None:
        self._accounts[client_email] = Account(client_email, private_key_id, public_key)

    def revoke_tokens(self) -> None:
        """Invalidates every issued token (as a key rotation or revocation
        would); clients must exchange a new assertion."""
        with self._grant_lock:
            self._tokens.clear()

    def issued(self, client_email: str | None = None) -> list[Grant]:
        with self._grant_lock:
            return [g for g in self.grants if g.ok and (client_email is None or g.client_email == client_email)]

    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == TOKEN_PATH]

    def api_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path != TOKEN_PATH]

    def _grant(self, rec: RecordedRequest, handler: Handler) -> None:
        def refuse(description: str, email: str = "") -> None:
            with self._grant_lock:
                self.grants.append(Grant(email, ok=False, error=description))
            handler.send_json(rec, 400, {"error": "invalid_grant", "error_description": description})

        if rec.method != "POST":
            return handler.send_json(rec, 405, {"error": "invalid_request", "error_description": "POST required"})
        if rec.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return handler.send_json(
                rec, 400, {"error": "invalid_request", "error_description": "Bad Request: form body required"}
            )
        form = parse_qs(rec.body.decode(), strict_parsing=True)
        if form.get("grant_type") != [JWT_BEARER]:
            return handler.send_json(
                rec, 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
            )
        assertion = (form.get("assertion") or [""])[0]
        try:
            header = pyjwt.get_unverified_header(assertion)
            unverified = pyjwt.decode(assertion, options={"verify_signature": False})
        except pyjwt.PyJWTError:
            return refuse("Invalid JWT: malformed assertion.")
        email = unverified.get("iss", "")
        account = self._accounts.get(email)
        if account is None:
            return refuse("Invalid grant: account not found", email)
        if header.get("alg") != "RS256" or header.get("typ") not in (None, "JWT"):
            return refuse("Invalid JWT: unsupported algorithm.", email)
        if header.get("kid") != account.private_key_id:
            return refuse("Invalid JWT Signature.", email)
        try:
            claims = pyjwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=email,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
                leeway=30,
            )
        except pyjwt.InvalidSignatureError:
            return refuse("Invalid JWT Signature.", email)
        except pyjwt.ExpiredSignatureError:
            return refuse("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.", email)
        except pyjwt.PyJWTError as e:
            return refuse(f"Invalid JWT: {e}", email)
        if claims["scope"] != SCOPE:
            return refuse(f"Invalid OAuth scope or ID token audience provided: {claims['scope']}", email)
        if not 0 < claims["exp"] - claims["iat"] <= 3600 or abs(claims["iat"] - time.time()) > 300:
            return refuse("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.", email)
        token = "ya29.c.fake-" + secrets.token_urlsafe(24)
        with self._grant_lock:
            self._tokens[token] = email
            self.grants.append(
                Grant(email, ok=True, access_token=token, claims=claims, header=header, form=rec.body.decode())
            )
        handler.send_json(rec, 200, {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"})

    # -- API --------------------------------------------------------------------

    def handle(self, h: Handler, rec: RecordedRequest) -> None:
        if rec.path == TOKEN_PATH:
            return self._grant(rec, h)
        auth = rec.headers.get("authorization", "")
        with self._grant_lock:
            known = auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self._tokens
        if not known:
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED", "domain": "googleapis.com"}],
            )
        openapi = OPENAPI_PATH.match(rec.path)
        match = VERTEX_PATH.match(rec.path)
        if rec.method != "POST" or not (match or openapi):
            raise ApiError(404, "NOT_FOUND", f"The requested URL {rec.path} was not found on this server.")
        if openapi:
            self._check_scope(openapi["project"], openapi["location"], "endpoints/openapi")
            return self._openai_chat(h, rec, parse_json_body(rec))
        self._check_scope(match["project"], match["location"], f"publishers/{match['publisher']}/models/{match['model']}")
        model, method = match["model"], match["method"]
        body = parse_json_body(rec)
        if match["publisher"] == "anthropic":
            return self._claude(h, rec, model, method, body)
        error = forced_error(model)
        if error is not None:
            if error.code == 429:
                # Vertex's 429 carries no RetryInfo.
                error = ApiError(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Resource exhausted. Please try again later. Please refer to "
                    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
                )
            raise error

        if method == "generateContent":
            validate_generate_content(body, model)
            answer = self.brain.generate(model, body)
            answer["usageMetadata"]["trafficType"] = "ON_DEMAND"
            return h.send_json(rec, 200, answer)
        if method == "streamGenerateContent":
            if rec.query_params.get("alt") != ["sse"]:
                raise invalid("this fake only streams with alt=sse")
            validate_generate_content(body, model)
            return h.send_sse(rec, self.brain.stream(model, body))
        if method == "predict":
            return h.send_json(rec, 200, self._predict(body))
        if method == "countTokens":
            validate_generate_content(body, model)
            answer = self.brain.count_tokens(body)
            answer["totalBillableCharacters"] = sum(len(p.get("text", "")) for c in body["contents"] for p in c["parts"])
            return h.send_json(rec, 200, answer)
        raise ApiError(400, "FAILED_PRECONDITION", f"Method {method} is not supported by publishers/google/models/{model}")

    def _check_scope(self, project: str, location: str, resource: str) -> None:
        """The project and location of a call must be the configured ones."""
        if project != self.project:
            raise ApiError(
                403,
                "PERMISSION_DENIED",
                f"Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}/{resource}' (or it may not exist).",
            )
        if location != self.location:
            raise invalid(f"Location {location} is not supported for this fake; use {self.location}.")

    def _openai_chat(self, h: Handler, rec: RecordedRequest, body: Any) -> None:
        """Model Garden's open models: Chat Completions, answered as the
        OpenAI fake does (`fake_openai.chat_reply`); the model is named
        publisher/model."""
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not MAAS_MODEL.match(model):
            raise invalid(f"Model {model!r} is not a Model Garden model; name it as publisher/model.")
        if "max_completion_tokens" in body:
            raise invalid('Invalid JSON payload received. Unknown name "max_completion_tokens": Cannot find field.')
        reply = fake_openai.chat_reply(body, self.next_id)
        if reply.events is not None:
            return fake_openai.write_sse(h, rec, reply.events, reply.delay)
        return h.send_json(rec, reply.status, reply.json)

    def _claude(self, h: Handler, rec: RecordedRequest, model: str, method: str, body: Any) -> None:
        """Anthropic's publisher: the Messages API behind rawPredict."""

        def refuse(message: str) -> None:
            h.send_json(rec, 400, fake_anthropic.anthropic_error("invalid_request_error", message))

        if not isinstance(body, dict):
            return refuse("invalid JSON body")
        if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
            return refuse(f"anthropic_version: must be {VERTEX_ANTHROPIC_VERSION}, got {body.get('anthropic_version')!r}")
        body = {k: v for k, v in body.items() if k != "anthropic_version"}
        counting = model == "count-tokens"
        if counting:
            if method != "rawPredict":
                raise ApiError(400, "FAILED_PRECONDITION", f"Method {method} is not supported by count-tokens")
        elif method in ("rawPredict", "streamRawPredict"):
            if "model" in body:
                return refuse("model: Extra inputs are not permitted")
            if bool(body.get("stream")) != (method == "streamRawPredict"):
                return refuse(f"stream: {method} takes stream={method == 'streamRawPredict'}")
            body["model"] = model
        else:
            raise ApiError(400, "FAILED_PRECONDITION", f"Method {method} is not supported by publishers/anthropic/models/{model}")
        betas = fake_anthropic.betas_of(rec.headers.get("anthropic-beta"))
        reply = fake_anthropic.messages_reply(body, counting, self.next_id, betas)
        if reply.events is not None:
            return fake_anthropic.write_sse(h, rec, reply.events, reply.one_write)
        return h.send_json(rec, reply.status, reply.json, reply.headers)

    @staticmethod
    def _predict(body: Any) -> dict:
        if not isinstance(body, dict) or set(body) - {"instances", "parameters"}:
            raise invalid('Invalid JSON payload received. Unknown name at predict request.')
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise invalid("instances must be a non-empty list")
        parameters = body.get("parameters") or {}
        if set(parameters) - {"outputDimensionality", "autoTruncate"}:
            raise invalid(f"Unknown parameters: {sorted(set(parameters) - {'outputDimensionality', 'autoTruncate'})}")
        dims = parameters.get("outputDimensionality")
        predictions = []
        chars = 0
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or not isinstance(instance.get("content"), str):
                raise invalid(f"instances[{i}].content must be a string")
            if set(instance) - {"content", "task_type", "title"}:
                raise invalid(f"instances[{i}] has unknown fields {sorted(set(instance) - {'content', 'task_type', 'title'})}")
            text = instance["content"]
            chars += len(text)
            predictions.append(
                {
                    "embeddings": {
                        "statistics": {"truncated": False, "token_count": count_tokens(text)},
                        "values": vector_for(text, dims),
                    }
                }
            )
        return {"predictions": predictions, "metadata": {"billableCharacterCount": chars}}
