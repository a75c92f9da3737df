"""A fault-injecting fake OpenAI-compatible upstream for the resilience
tests: chat completions (plain and SSE streams) and embeddings, with
scripted per-request faults.

Each request takes the next fault from the script (`fake.script(...)`);
when the script is empty, `fake.default_fault` applies (or, with
`fake.random_faults(p, faults)`, a random fault with probability p).
Faults:

- "ok": a normal answer (also what every successful request records)
- 500 / 502 / 503 (an int): that status with an OpenAI error body
- ("429", seconds): 429 with `Retry-After: seconds`
- "hang": read the request, answer nothing until the fake stops (or the
  client goes away)
- "drop": read the request, then close the connection without answering
- "drop_before_first": stream head sent, connection closed before any event
- "drop_mid_stream": stream head and one content event, then the connection
  closes (only meaningful for streams; plain calls get "drop")
- "hold_mid_stream": stream head and one content event, then nothing until
  `fake.release_held()` (or the fake stops), then the rest of the stream
  (plain calls are answered at once)

The answer text names the fake (`"<name>: <last user text>"`), so a test
sees which upstream served. Every request is recorded with its fault, the
monotonic time it arrived and whether it was answered successfully.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from fake_server import RecordedRequest, RecordingHandler, RecordingServer

Fault = Any  # "ok" | int | ("429", seconds) | "hang" | "drop" | ...


@dataclass
class FaultRecord(RecordedRequest):
    fault: Any = "ok"
    at: float = 0.0
    succeeded: bool = False


class FaultHandler(RecordingHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        rec = FaultRecord(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        fault = self.fake._next_fault()
        rec.fault = fault
        self.fake._record(rec)
        try:
            payload = json.loads(body)
        except ValueError:
            self._send_json(rec, 400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        if isinstance(fault, int):
            self._send_json(rec, fault, {"error": {"message": f"injected {fault}", "type": "server_error"}})
            return
        if isinstance(fault, tuple) and fault[0] == "429":
            self._send_json(
                rec,
                429,
                {"error": {"message": "injected rate limit", "type": "rate_limit_error"}},
                headers={"Retry-After": str(fault[1])},
            )
            return
        if fault == "hang":
            self.fake._stopping.wait()
            self.close_connection = True
            return
        stream = bool(payload.get("stream"))
        if fault == "drop" or (not stream and fault in ("drop_before_first", "drop_mid_stream")):
            self._drop()
            return
        if self.path.endswith("/embeddings"):
            self._embeddings(rec, payload)
        elif self.path.endswith("/chat/completions"):
            self._chat(rec, payload, stream, fault)
        else:
            self._send_json(rec, 404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

    def _drop(self) -> None:
        """Closes the connection abruptly (RST where possible)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.connection.close()

    def _text(self, payload: dict) -> str:
        user = [m for m in payload.get("messages", []) if m.get("role") == "user"]
        content = user[-1]["content"] if user else ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return f"{self.fake.name}: {content}"

    def _chat(self, rec: FaultRecord, payload: dict, stream: bool, fault: Fault) -> None:
        text = self._text(payload)
        model = payload.get("model", "fake")
        if not stream:
            self._send_json(
                rec,
                200,
                {
                    "id": "chatcmpl-fault",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                },
            )
            rec.succeeded = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        rec.response_status = 200
        if fault == "drop_before_first":
            self._drop()
            return

        def event(delta: dict, finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-fault",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        words = text.split(" ")
        self._write_chunk(event({"role": "assistant", "content": words[0]}))
        if fault == "drop_mid_stream":
            time.sleep(0.05)  # let the first event travel before the reset
            self._drop()
            return
        if fault == "hold_mid_stream":
            self.fake._held.set()
            self.fake._release.wait()
        for word in words[1:]:
            self._write_chunk(event({"content": " " + word}))
        self._write_chunk(event({}, "stop"))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")
        rec.succeeded = True

    def _embeddings(self, rec: FaultRecord, payload: dict) -> None:
        inputs = payload.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        self._send_json(
            rec,
            200,
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [float(len(str(x))), float(i), 0.5]}
                    for i, x in enumerate(inputs)
                ],
                "model": payload.get("model", "fake"),
                "usage": {"prompt_tokens": 2, "total_tokens": 2},
            },
        )
        rec.succeeded = True


class FaultyUpstream(RecordingServer):
    """The fake. `base_url_v1` is what an endpoint's `base_url` should be."""

    thread_name = "fake-faults"

    def __init__(self, name: str) -> None:
        super().__init__(FaultHandler)
        self.name = name
        self.default_fault: Fault = "ok"
        self._script: list[Fault] = []
        self._random: tuple[float, list[Fault]] | None = None
        self._rng = random.Random(name)
        self._stopping = threading.Event()
        self._held = threading.Event()
        self._release = threading.Event()

    @property
    def base_url_v1(self) -> str:
        return f"{self.base_url}/v1"

    def script(self, *faults: Fault) -> None:
        """The faults of the next requests, in order."""
        with self._lock:
            self._script = list(faults)

    def random_faults(self, probability: float, faults: list[Fault], seed: int = 0) -> None:
        with self._lock:
            self._random = (probability, faults)
            self._rng = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script = []
            self._random = None
            self.default_fault = "ok"

    def _next_fault(self) -> Fault:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            if self._random is not None:
                probability, faults = self._random
                if self._rng.random() < probability:
                    return self._rng.choice(faults)
            return self.default_fault

    def wait_held(self, timeout: float = 10) -> bool:
        """Whether a "hold_mid_stream" stream is (or was) being held."""
        return self._held.wait(timeout)

    def release_held(self) -> None:
        """Lets held streams finish."""
        self._release.set()

    def succeeded(self) -> list[FaultRecord]:
        return [r for r in self.requests if r.succeeded]

    def stop(self) -> None:
        self._stopping.set()
        self._release.set()
        super().stop()
