"""What the provider e2e tests (test_provider_*.py) share: the tool
definitions they send and the fresh OpenAI-SDK client of a running gateway.
Each test keeps its own assertions on what reached the fake upstream."""

from __future__ import annotations

import anthropic
import pytest
from openai import OpenAI

from harness import Gateway

CLIENT_KEY = "client-dummy-key"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# The weather tool without the optional unit, for providers whose fakes
# echo a single required argument.
CITY_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def check_alive(gateway: Gateway) -> None:
    """Fails the test (with the log tail) when the gateway process has exited."""
    if gateway.process.poll() is not None:
        pytest.fail(f"gateway exited with {gateway.process.returncode}:\n{gateway.log_text()[-4000:]}", pytrace=False)


def fresh_client(gateway: Gateway, fake=None, api_key: str = CLIENT_KEY) -> OpenAI:
    """An OpenAI SDK client of `gateway` (no retries), after clearing the
    fake upstream's recorded requests and checking the gateway still runs."""
    if fake is not None:
        fake.reset()
    check_alive(gateway)
    return OpenAI(base_url=gateway.openai_base_url, api_key=api_key, max_retries=0, timeout=30)


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    """An Anthropic SDK client of `gateway` (no retries)."""
    return anthropic.Anthropic(base_url=gateway.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)


# A system prompt and a question: the first chat of most provider tests.
HELLO = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to Portico"},
]
# A multi-turn conversation with non-ASCII text.
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "Grüezi Zürich 👋"},
]


def assert_client_key_not_sent(rec, client_key: str = CLIENT_KEY) -> None:
    """The gateway's own client credential never reaches the upstream."""
    for name, value in rec.headers.items():
        assert client_key not in value, f"client key leaked upstream in header {name}"
