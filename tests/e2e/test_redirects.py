"""An upstream redirect is not followed: the provider credentials must not
travel to a host the endpoint did not name. The client gets a gateway error
and the redirect target never hears from the gateway."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from harness import launch_gateway, require_built


class _Recorder(ThreadingHTTPServer):
    def __init__(self, handler) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[dict[str, str]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _handler(redirect_to: str | None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.server.requests.append({k.lower(): v for k, v in self.headers.items()})
            if redirect_to:
                self.send_response(307)
                self.send_header("Location", redirect_to + self.path)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def servers():
    elsewhere = _Recorder(_handler(None))
    redirecting = _Recorder(_handler(elsewhere.url))
    yield redirecting, elsewhere
    redirecting.shutdown()
    elsewhere.shutdown()


def test_upstream_redirect_is_not_followed(servers, tmp_path):
    require_built("openai")
    redirecting, elsewhere = servers
    config = tmp_path / "portico.toml"
    config.write_text(
        "[[endpoints]]\n"
        'name = "redirected"\nprovider = "openai"\nmodel = "gpt-fake"\n'
        "[endpoints.config]\n"
        f'api_key = "sk-secret-upstream"\nbase_url = "{redirecting.url}/v1"\n'
    )
    with launch_gateway(tmp_path, config) as gw:
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0)
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model="redirected", messages=[{"role": "user", "content": "hi"}])
        assert raised.value.status_code >= 500
    assert len(redirecting.requests) == 1
    assert redirecting.requests[0]["authorization"] == "Bearer sk-secret-upstream"
    assert elsewhere.requests == []
