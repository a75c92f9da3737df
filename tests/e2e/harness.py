"""Start the real gateway binary, with the real built plugins, for a test
module: `launch_gateway(work_dir, config_file, env)` is a context manager
yielding a running, healthy `Gateway`.

Provider test modules write their own endpoints file (pointing at their own
fake upstream) and launch their own gateway with it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PORTICO_BIN", REPO / "target" / "dist" / "portico"))
# Overridable to run the suite against another build of the plugins.
PLUGINS_DIR = Path(os.environ.get("PORTICO_E2E_PLUGINS_DIR", REPO / "plugins"))
START_TIMEOUT = float(os.environ.get("PORTICO_E2E_START_TIMEOUT", "120"))

# Compiled plugins shared by every gateway the suite starts (set for the
# session by conftest.py): a start in a fresh data dir would otherwise compile
# every plugin again, ~8 s on two cores. Entries are named by the plugin's
# SHA-256 and the engine's hash and are only ever replaced by rename, never
# rewritten, so linking them between data dirs is safe; the suite's first
# start still compiles them all.
SHARED_PLUGIN_CACHE: Path | None = None

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
    upstream_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/gateway/openai/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.url}/gateway/anthropic"

    @property
    def gemini_base_url(self) -> str:
        return f"{self.url}/gateway/gemini"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def require_built(*plugin_ids: str) -> None:
    """Fail (never skip) when the binary or a needed plugin was not built."""
    if not BINARY.is_file():
        pytest.fail(f"gateway binary {BINARY} is missing: run `make build` (or scripts/build) first", pytrace=False)
    for plugin in plugin_ids:
        if not (PLUGINS_DIR / f"{plugin}.wasm").is_file():
            pytest.fail(
                f"{PLUGINS_DIR / (plugin + '.wasm')} is missing: run `make plugins` (scripts/build-plugins) first",
                pytrace=False,
            )


def _share(entry: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(entry, target)
    except OSError:
        shutil.copyfile(entry, target)


def _seed_plugin_cache(data_dir: Path) -> None:
    """Gives a fresh data dir the suite's compiled plugins (a restart keeps
    its own cache)."""
    cache = data_dir / "plugin-cache"
    if SHARED_PLUGIN_CACHE is None or cache.exists():
        return
    cache.mkdir(parents=True)
    for entry in SHARED_PLUGIN_CACHE.glob("*.cwasm"):
        _share(entry, cache / entry.name)


def _collect_plugin_cache(data_dir: Path) -> None:
    """Adds what a stopped gateway compiled to the suite's cache."""
    if SHARED_PLUGIN_CACHE is None:
        return
    for entry in (data_dir / "plugin-cache").glob("*.cwasm"):
        _share(entry, SHARED_PLUGIN_CACHE / entry.name)


@contextlib.contextmanager
def launch_gateway(
    work: Path,
    config: Path,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    plugins_dir: Path | None = None,
) -> Iterator[Gateway]:
    """Runs the gateway on a free port with `config` until the block ends.
    Its state lives in `work/data`, so launching again with the same `work`
    is a restart. `extra_args` are appended to the command line;
    `plugins_dir` replaces the built plugins folder."""
    log_path = work / "gateway.log"
    port = free_port()
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
    process_env.update(env or {})
    process_env.setdefault("RUST_LOG", "info")
    cmd = [
        str(BINARY),
        "--listen",
        f"127.0.0.1:{port}",
        "--plugins-dir",
        str(plugins_dir or PLUGINS_DIR),
        "--config",
        str(config),
        "--data-dir",
        str(work / "data"),
        *(extra_args or []),
    ]
    _seed_plugin_cache(work / "data")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=work, env=process_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    gw = Gateway(port=port, process=process, log_path=log_path)

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
            time.sleep(0.1)
        yield gw
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        _collect_plugin_cache(work / "data")
