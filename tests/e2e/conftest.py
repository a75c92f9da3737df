"""Fixtures: a fake OpenAI upstream, and the real gateway binary with the real
built plugins, configured with endpoints that point at the fake."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterator

import pytest

import harness
from fake_openai import FakeOpenAI
from harness import PLUGINS_DIR, Gateway, _tail, free_port, launch_gateway, require_built  # noqa: F401


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



@pytest.fixture(scope="session", autouse=True)
def shared_plugin_cache(tmp_path_factory) -> Iterator[Path]:
    """One compiled-plugin cache for every gateway the suite starts."""
    harness.SHARED_PLUGIN_CACHE = tmp_path_factory.mktemp("plugin-cache")
    yield harness.SHARED_PLUGIN_CACHE
    harness.SHARED_PLUGIN_CACHE = None


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


@pytest.fixture(scope="session")
def gateway(fake_upstream: FakeOpenAI, upstream_key: str, tmp_path_factory) -> Gateway:
    require_built("openai")
    work = tmp_path_factory.mktemp("gateway")
    config = work / "portico.toml"
    write_config(config, fake_upstream, down_port=free_port())
    with launch_gateway(work, config, env={KEY_VAR: upstream_key}) as gw:
        gw.upstream_key = upstream_key
        yield gw


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
