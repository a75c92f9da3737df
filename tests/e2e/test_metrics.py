"""GET /metrics: Prometheus text format, parsed with the official parser,
with request, error, latency, time-to-first-token, token, cost and plugin
counters matching the calls made. Not behind the admin token."""

from __future__ import annotations

import secrets
import shutil
import time

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from fake_openai import FakeOpenAI
from harness import PLUGINS_DIR, Gateway, launch_gateway, require_built

TOKEN = "metrics-admin-" + secrets.token_hex(8)
ENDPOINT = "m-openai"
MODEL = "gpt-5-mini"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    require_built("openai")
    key = "sk-" + secrets.token_hex(12)
    fake = FakeOpenAI(api_key=key).start()
    work = tmp_path_factory.mktemp("metrics-gateway")
    plugins = work / "plugins"
    plugins.mkdir()
    shutil.copy(PLUGINS_DIR / "openai.wasm", plugins / "openai.wasm")
    # A file that is not a component: counted as a failed load.
    (plugins / "broken.wasm").write_bytes(b"\0asm not really")
    config = work / "portico.toml"
    config.write_text(
        f'[[endpoints]]\nname = "{ENDPOINT}"\nprovider = "openai"\nmodel = "{MODEL}"\n'
        f'[endpoints.config]\napi_key = "{key}"\nbase_url = "{fake.base_url}"\n'
    )
    try:
        with launch_gateway(work, config, extra_args=["--admin-token", TOKEN], plugins_dir=plugins) as gw:
            yield gw
    finally:
        fake.stop()


def scrape(gw: Gateway) -> dict[tuple[str, frozenset], float]:
    r = requests.get(f"{gw.url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_calls_tokens_cost_and_plugins(gateway):
    client = openai.OpenAI(base_url=gateway.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "count these tokens please"}]
    tokens_in = tokens_out = 0
    for _ in range(2):
        r = client.chat.completions.create(model=ENDPOINT, messages=messages)
        tokens_in += r.usage.prompt_tokens
        tokens_out += r.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(model=ENDPOINT, messages=messages, stream=True, stream_options={"include_usage": True})
    )
    usage = next(c.usage for c in reversed(chunks) if c.usage)
    tokens_in += usage.prompt_tokens
    tokens_out += usage.completion_tokens
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="m-missing", messages=messages)

    providers = requests.get(f"{gateway.url}/api/v1/providers", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    model = next(m for p in providers if p["id"] == "openai" for m in p["models"] if m["id"] == MODEL)
    cost = tokens_in * model["input_price_per_mtok"] / 1e6 + tokens_out * model["output_price_per_mtok"] / 1e6

    # Streams are counted when they end, a moment after the client's last
    # chunk: poll briefly.
    deadline = time.monotonic() + 5
    while True:
        s = scrape(gateway)
        if value(s, "portico_requests_total", endpoint=ENDPOINT, provider="openai", status="200") >= 3:
            break
        assert time.monotonic() < deadline, "requests not counted"
        time.sleep(0.1)

    route = {"endpoint": ENDPOINT, "provider": "openai"}
    assert value(s, "portico_requests_total", status="200", **route) == 3
    assert value(s, "portico_request_errors_total", status="200", **route) == 0
    # The unknown endpoint's name stays out of the labels.
    assert value(s, "portico_requests_total", endpoint="", provider="", status="404") == 1
    assert value(s, "portico_request_errors_total", endpoint="", provider="", status="404") == 1
    assert value(s, "portico_tokens_total", direction="input", **route) == tokens_in
    assert value(s, "portico_tokens_total", direction="output", **route) == tokens_out
    assert value(s, "portico_cost_usd_total", **route) == pytest.approx(cost, rel=1e-9)
    assert value(s, "portico_request_duration_seconds_count", **route) == 3
    assert value(s, "portico_request_duration_seconds_bucket", le="+Inf", **route) == 3
    assert value(s, "portico_request_duration_seconds_sum", **route) > 0
    assert value(s, "portico_time_to_first_token_seconds_count", **route) == 1
    assert value(s, "portico_plugin_loads_total", plugin="openai") == 1
    assert value(s, "portico_plugin_load_failures_total") >= 1
    assert not any("m-missing" in str(labels) for (_, labels) in s)


def test_metrics_need_no_admin_token(gateway):
    assert requests.get(f"{gateway.url}/metrics", timeout=10).status_code == 200
    assert requests.get(f"{gateway.url}/api/v1/usage", timeout=10).status_code == 401


class _Collector:
    """A minimal OTLP/HTTP receiver: records the bodies POSTed to /v1/traces."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[tuple[str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_traces_are_exported_with_the_standard_otel_variables(tmp_path):
    require_built("openai")
    collector = _Collector()
    key = "sk-" + secrets.token_hex(12)
    fake = FakeOpenAI(api_key=key).start()
    config = tmp_path / "portico.toml"
    config.write_text(
        f'[[endpoints]]\nname = "{ENDPOINT}"\nprovider = "openai"\nmodel = "{MODEL}"\n'
        f'[endpoints.config]\napi_key = "{key}"\nbase_url = "{fake.base_url}"\n'
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "portico-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    request_id = "otel-" + secrets.token_hex(8)
    try:
        with launch_gateway(tmp_path, config, env=env) as gw:
            r = requests.post(
                f"{gw.openai_base_url}/chat/completions",
                json={"model": ENDPOINT, "messages": [{"role": "user", "content": "trace me"}]},
                headers={"x-request-id": request_id},
                timeout=30,
            )
            assert r.status_code == 200
            deadline = time.monotonic() + 10
            while not any(request_id.encode() in body for _, body in collector.bodies):
                assert time.monotonic() < deadline, f"no span with the request id exported; got {len(collector.bodies)} posts"
                time.sleep(0.1)
    finally:
        fake.stop()
        collector.stop()
    path, body = next((p, b) for p, b in collector.bodies if request_id.encode() in b)
    assert path == "/v1/traces"
    assert b"gateway_request" in body and b"portico-e2e" in body
