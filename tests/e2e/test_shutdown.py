"""Graceful shutdown: on SIGTERM the gateway stops accepting connections,
lets in-flight streams finish within the grace period, then exits; a stream
longer than the grace period is cut so the exit stays bounded."""

from __future__ import annotations

import signal
import socket
import threading
import time

import openai
import pytest

from conftest import KEY_VAR, write_config
from harness import _tail, free_port, launch_gateway, require_built

WORDS = " ".join(f"w{i}" for i in range(12))
# The fake spaces "[slow]" stream events 0.3 s apart: ~4 s for this prompt.
SLOW_PROMPT = f"[slow] {WORDS}"


def _client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=30)


def _stream_in_background(gw, first_chunk: threading.Event, outcome: dict) -> threading.Thread:
    def run() -> None:
        text = []
        try:
            stream = _client(gw).chat.completions.create(
                model="e2e-chat", messages=[{"role": "user", "content": SLOW_PROMPT}], stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
                    first_chunk.set()
            outcome["text"] = "".join(text)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcome["error"] = error
            outcome["text"] = "".join(text)
        finally:
            first_chunk.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def launch(fake_upstream, upstream_key, tmp_path):
    require_built("openai")

    def start(grace_secs: int):
        config = tmp_path / "portico.toml"
        write_config(config, fake_upstream, down_port=free_port())
        return launch_gateway(
            tmp_path, config, env={KEY_VAR: upstream_key}, extra_args=["--shutdown-grace-secs", str(grace_secs)]
        )

    return start


def test_sigterm_lets_an_inflight_stream_finish_and_refuses_new_connections(launch):
    with launch(grace_secs=30) as gw:
        first_chunk, outcome = threading.Event(), {}
        thread = _stream_in_background(gw, first_chunk, outcome)
        assert first_chunk.wait(15), "the stream never started"
        sent_at = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 5
        while _accepts_connections(gw.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _accepts_connections(gw.port), f"the listener still accepts after SIGTERM:\n{_tail(gw.log_text())}"
        assert gw.process.poll() is None, "the gateway exited before its in-flight stream finished"

        thread.join(20)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["text"] == f"Echo: {SLOW_PROMPT}"
        assert gw.process.wait(10) == 0
        assert time.monotonic() - sent_at < 15
        log = gw.log_text()
        assert "shutting down" in log and "stopped" in log


def test_a_stream_longer_than_the_grace_period_is_cut_and_the_exit_is_bounded(launch):
    with launch(grace_secs=1) as gw:
        first_chunk, outcome = threading.Event(), {}
        thread = _stream_in_background(gw, first_chunk, outcome)
        assert first_chunk.wait(15), "the stream never started"
        sent_at = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)
        assert gw.process.wait(10) == 0
        elapsed = time.monotonic() - sent_at
        assert 0.8 < elapsed < 4, f"exit took {elapsed:.1f}s with a 1 s grace period"
        thread.join(10)
        # The client saw the start of the answer, then the connection end.
        assert outcome["text"] != f"Echo: {SLOW_PROMPT}"
        assert outcome["text"].startswith("Echo:")
        assert "grace period over" in gw.log_text()
