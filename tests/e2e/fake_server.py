"""What the fake upstreams share: a recording ThreadingHTTPServer on
127.0.0.1 and the HTTP plumbing of its handler.

A fake subclasses `RecordingServer` (passing its handler class to
`__init__`, setting `thread_name`) and `RecordingHandler` (adding its
`do_*` methods, which record a `RecordedRequest`, or a subclass with more
fields, through `self.fake._record`). Only the transport lives here; what
a fake validates and answers stays in its own module.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    response_status: int = 0
    response_json: Any = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class RecordingHandler(BaseHTTPRequestHandler):
    """Handler base: body reading (sized or chunked), JSON answers and
    chunked writes. `fake` is set to the server's `RecordingServer`."""

    fake: Any
    # HTTP/1.1 so clients may keep connections alive and streams can use
    # chunked transfer encoding, as the real APIs do.
    protocol_version = "HTTP/1.1"
    # The content type of `_send_json` answers and headers sent with each
    # (`_json_headers` may compute them from the request instead).
    json_content_type: ClassVar[str] = "application/json"
    json_headers: ClassVar[dict[str, str]] = {}
    json_ensure_ascii: ClassVar[bool] = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the recorded requests are what tests look at

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers, up to the empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(
        self, rec: RecordedRequest, status: int, obj: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Answers `obj` as JSON and records it on `rec`."""
        rec.response_status = status
        rec.response_json = obj
        data = json.dumps(obj, ensure_ascii=self.json_ensure_ascii).encode()
        self.send_response(status)
        self.send_header("Content-Type", self.json_content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in [*self._json_headers(rec).items(), *(headers or {}).items()]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _json_headers(self, rec: RecordedRequest) -> dict[str, str]:
        return self.json_headers

    def _start_sse(self, rec: Any, events: list[Any], content_type: str = "text/event-stream; charset=utf-8") -> None:
        """Starts a 200 SSE answer (chunked, not cached) whose `events` are
        recorded on `rec.response_events`; the body follows in chunks."""
        rec.response_status = 200
        rec.response_events = list(events)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        """One chunk of a `Transfer-Encoding: chunked` body, flushed."""
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class RecordingServer:
    """A fake upstream that records every request it gets."""

    thread_name: ClassVar[str] = "fake-upstream"

    def __init__(self, handler_class: type[RecordingHandler]) -> None:
        self.handler_class = handler_class
        self._lock = threading.Lock()
        self._requests: list[Any] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Self:
        handler = type("Handler", (self.handler_class,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "fake upstream not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Any]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def only_request(self) -> Any:
        reqs = self.requests
        assert len(reqs) == 1, f"expected exactly one upstream request, got {[(r.method, r.path) for r in reqs]}"
        return reqs[0]

    def _record(self, rec: Any) -> None:
        with self._lock:
            self._requests.append(rec)
