"""Fixtures: a fake OpenAI upstream, and the real gateway binary with the real
built plugins, configured with endpoints that point at the fake."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PORTICO_BIN", REPO / "target" / "release" / "portico"))
# Overridable to run the suite against another build of the plugins.
PLUGINS_DIR = Path(os.environ.get("PORTICO_E2E_PLUGINS_DIR", REPO / "plugins"))
START_TIMEOUT = float(os.environ.get("PORTICO_E2E_START_TIMEOUT", "120"))

# The upstream key lives only in the gateway's environment; the config file
# references it as ${...}, which proves the substitution works.
KEY_VAR = "PORTICO_E2E_UPSTREAM_KEY"

# Endpoint names (what clients pass as `model`) and their upstream models.
CHAT = "e2e-chat"
EMBED = "e2e-embed"
BAD_KEY = "e2e-bad-key"
RATE_LIMITED = "e2e-rate-limited"
UPSTREAM_400 = "e2e-upstream-400"
UPSTREAM_500 = "e2e-upstream-500"
UPSTREAM_DOWN = "e2e-upstream-down"
CHAT_MODEL = "gpt-fake-mini"
EMBED_MODEL = "text-embedding-fake"

# Local sockets only: a proxy from the environment must not get in between.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Gateway:
    port: int
    process: subprocess.Popen
    log_path: Path
    upstream_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/gateway/openai/v1"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def upstream_key() -> str:
    return "sk-upstream-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def fake_upstream(upstream_key: str):
    fake = FakeOpenAI(api_key=upstream_key).start()
    yield fake
    fake.stop()


def write_config(path: Path, fake: FakeOpenAI, down_port: int) -> None:
    def endpoint(name: str, model: str, api_key: str = "${" + KEY_VAR + "}", base_url: str = fake.base_url) -> str:
        return (
            "[[endpoints]]\n"
            f'name = "{name}"\n'
            'provider = "openai"\n'
            f'model = "{model}"\n'
            "[endpoints.config]\n"
            f'api_key = "{api_key}"\n'
            f'base_url = "{base_url}"\n\n'
        )

    path.write_text(
        endpoint(CHAT, CHAT_MODEL)
        + endpoint(EMBED, EMBED_MODEL)
        + endpoint(BAD_KEY, CHAT_MODEL, api_key="sk-wrong-key")
        + endpoint(RATE_LIMITED, "force-429")
        + endpoint(UPSTREAM_400, "force-400")
        + endpoint(UPSTREAM_500, "force-500")
        + endpoint(UPSTREAM_DOWN, CHAT_MODEL, base_url=f"http://127.0.0.1:{down_port}/v1")
    )


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def gateway(fake_upstream: FakeOpenAI, upstream_key: str, tmp_path_factory) -> Gateway:
    if not BINARY.is_file():
        pytest.fail(f"gateway binary {BINARY} is missing: run `make build` (or scripts/build) first", pytrace=False)
    if not (PLUGINS_DIR / "openai.wasm").is_file():
        pytest.fail(
            f"{PLUGINS_DIR / 'openai.wasm'} is missing: run `make plugins` (scripts/build-plugins) first",
            pytrace=False,
        )

    work = tmp_path_factory.mktemp("gateway")
    config = work / "portico.toml"
    write_config(config, fake_upstream, down_port=free_port())
    log_path = work / "gateway.log"
    port = free_port()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
    env[KEY_VAR] = upstream_key
    env.setdefault("RUST_LOG", "info")
    cmd = [
        str(BINARY),
        "--listen",
        f"127.0.0.1:{port}",
        "--plugins-dir",
        str(PLUGINS_DIR),
        "--config",
        str(config),
        "--data-dir",
        str(work / "data"),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    gw = Gateway(port=port, process=process, log_path=log_path, upstream_key=upstream_key)

    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no attempt"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"gateway exited with {process.returncode} during start-up: {' '.join(cmd)}\n"
                    f"--- gateway stderr ---\n{_tail(gw.log_text())}",
                    pytrace=False,
                )
            try:
                r = requests.get(f"{gw.url}/healthz", timeout=2)
                if r.status_code == 200:
                    break
                last_error = f"/healthz answered {r.status_code}"
            except requests.RequestException as e:
                last_error = str(e)
            if time.monotonic() > deadline:
                pytest.fail(
                    f"gateway not healthy after {START_TIMEOUT:.0f}s ({last_error}): {' '.join(cmd)}\n"
                    f"--- gateway stderr ---\n{_tail(gw.log_text())}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield gw
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _fresh_upstream_log(request, fake_upstream: FakeOpenAI):
    """Each test sees only its own upstream requests; a gateway that died
    under a previous test is reported as such, not as a confusing error."""
    fake_upstream.reset()
    if "gateway" in request.fixturenames:
        gw: Gateway = request.getfixturevalue("gateway")
        if gw.process.poll() is not None:
            pytest.fail(
                f"gateway process exited with {gw.process.returncode}\n--- gateway stderr ---\n{_tail(gw.log_text())}",
                pytrace=False,
            )
        request.node._gateway_log_offset = gw.log_path.stat().st_size
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach what the gateway logged during a failed test to its report."""
    report = yield
    offset = getattr(item, "_gateway_log_offset", None)
    if report.failed and call.when == "call" and offset is not None:
        gw = item.funcargs.get("gateway")
        if gw is not None:
            with open(gw.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            report.sections.append(("gateway stderr", _tail(text, 200)))
    return report
