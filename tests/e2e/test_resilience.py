"""Targets, fallbacks, retries, timeouts and the circuit breaker, through
the real binary and openai plugin, driven by the official OpenAI SDK,
against fault-injecting fake upstreams (fake_faults.py). Endpoints are
created through the management API, each test with its own fakes (the
gateway's breakers are per target name)."""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI

from fake_faults import FaultyUpstream
from harness import Gateway, free_port, launch_gateway, require_built

_names = itertools.count()


@pytest.fixture(scope="module")
def gw(tmp_path_factory) -> Gateway:
    require_built("openai")
    work = tmp_path_factory.mktemp("resilience")
    config = work / "portico.toml"
    config.write_text("")
    with launch_gateway(work, config) as gateway:
        yield gateway


@pytest.fixture
def fakes():
    started: list[FaultyUpstream] = []

    def make(name: str) -> FaultyUpstream:
        fake = FaultyUpstream(f"{name}{next(_names)}").start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


def client(gw: Gateway, timeout: float = 30) -> OpenAI:
    # max_retries=0: what the gateway answers is what the test sees.
    return OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=timeout)


def api(gw: Gateway, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{gw.url}/api/v1{path}", json=body, timeout=10)


def plain(gw: Gateway, fake: FaultyUpstream | None, base_url: str | None = None) -> str:
    """A plain endpoint on `fake` (or on `base_url`); returns its name."""
    name = f"plain-{next(_names)}"
    r = api(
        gw,
        "POST",
        "/endpoints",
        {
            "name": name,
            "provider": "openai",
            "model": "fake-model",
            "config": {"api_key": "sk-test", "base_url": base_url or fake.base_url_v1},
        },
    )
    assert r.status_code == 201, r.text
    return name


def router(gw: Gateway, policy: dict) -> str:
    name = f"router-{next(_names)}"
    r = api(gw, "POST", "/endpoints", {"name": name, "policy": policy})
    assert r.status_code == 201, r.text
    return name


def ask(gw: Gateway, endpoint: str, text: str, timeout: float = 30) -> str:
    response = client(gw, timeout).chat.completions.create(
        model=endpoint, messages=[{"role": "user", "content": text}]
    )
    return response.choices[0].message.content


def upstream_texts(fake: FaultyUpstream) -> list[str]:
    return [r.json["messages"][-1]["content"] for r in fake.requests]


def test_policy_validation(gw: Gateway, fakes) -> None:
    a = plain(gw, fakes("a"))
    r1 = router(gw, {"targets": [{"endpoint": a}]})
    cases = [
        ({"name": "x1", "policy": {}}, "provider"),
        ({"name": "x2", "policy": {"targets": [{"endpoint": "nope"}]}}, "does not exist"),
        ({"name": "x3", "policy": {"targets": [{"endpoint": r1}]}}, "no nesting"),
        ({"name": "x4", "policy": {"targets": [{"endpoint": a}], "retry": {"max_attempts": 0}}}, "max_attempts"),
        ({"name": "x5", "policy": {"targets": [{"endpoint": a}, {"endpoint": a}]}}, "twice"),
        ({"name": "x6", "policy": {"targets": [{"endpoint": "x6"}]}}, "no provider"),
        ({"name": "x7", "model": "m", "policy": {"targets": [{"endpoint": a}]}}, "router"),
        ({"name": "x8", "policy": {"targets": [{"endpoint": a}], "colour": 1}}, "colour"),
    ]
    for body, needle in cases:
        r = api(gw, "POST", "/endpoints", body)
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["error"]["message"], (body, r.text)
    # A target cannot become a router itself while something routes to it.
    r = api(
        gw,
        "PUT",
        f"/endpoints/{a}",
        {
            "provider": "openai",
            "model": "fake-model",
            "config": {"api_key": "sk-test", "base_url": "http://127.0.0.1:9/v1"},
            "policy": {"fallbacks": [r1]},
        },
    )
    assert r.status_code == 400 and "nesting" in r.json()["error"]["message"], r.text
    # The policy reads back as written, defaults filled.
    got = api(gw, "GET", f"/endpoints/{r1}").json()
    assert got["provider"] == "" and got["policy"]["targets"] == [{"endpoint": a, "weight": 1}]
    assert got["policy"]["retry"]["max_attempts"] == 1
    # A deleted target is tolerated at request time, with a clear error
    # when nothing is left.
    assert api(gw, "DELETE", f"/endpoints/{a}").status_code == 204
    with pytest.raises(openai.InternalServerError) as err:
        ask(gw, r1, "anyone?")
    assert "none of its targets" in str(err.value)


@pytest.mark.parametrize("fault", [500, ("429", 1), "hang", "drop", "unreachable"])
def test_fallback_on_failure(gw: Gateway, fakes, fault) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    if fault == "unreachable":
        first = plain(gw, None, base_url=f"http://127.0.0.1:{free_port()}/v1")
    else:
        first = plain(gw, primary)
        primary.script(fault)
    name = router(
        gw,
        {
            "targets": [{"endpoint": first}],
            "fallbacks": [plain(gw, backup)],
            "timeouts": {"attempt_ms": 1000},
        },
    )
    text = f"help {uuid.uuid4().hex}"
    started = time.monotonic()
    answer = ask(gw, name, text)
    assert answer == f"{backup.name}: {text}"
    assert time.monotonic() - started < 5
    # The bytes that reached each upstream: the request once per target.
    assert upstream_texts(backup) == [text]
    if fault != "unreachable":
        assert upstream_texts(primary) == [text]
        assert primary.requests[0].json == backup.requests[0].json


def test_client_errors_are_not_retried_or_fallen_back(gw: Gateway, fakes) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, primary)}],
            "fallbacks": [plain(gw, backup)],
            "retry": {"max_attempts": 3, "initial_backoff_ms": 10},
        },
    )
    primary.script(400)
    with pytest.raises(openai.BadRequestError):
        ask(gw, name, "bad")
    assert len(primary.requests) == 1 and backup.requests == []


def test_retry_honours_retry_after(gw: Gateway, fakes) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, primary)}],
            "fallbacks": [plain(gw, backup)],
            "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 2000},
        },
    )
    primary.script(("429", 1))
    assert ask(gw, name, "patience") == f"{primary.name}: patience"
    first, second = primary.requests
    assert second.at - first.at >= 0.95, "the retry waited for Retry-After"
    assert first.body == second.body
    assert backup.requests == []

    # A Retry-After longer than the longest backoff: on to the fallback
    # at once instead of waiting.
    primary.reset()
    primary.script(("429", 30))
    started = time.monotonic()
    assert ask(gw, name, "hurry") == f"{backup.name}: hurry"
    assert time.monotonic() - started < 2
    assert len(primary.requests) == 1


def test_retry_with_backoff_then_fall_back(gw: Gateway, fakes) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, primary)}],
            "fallbacks": [plain(gw, backup)],
            "retry": {"max_attempts": 3, "initial_backoff_ms": 20, "max_backoff_ms": 100},
        },
    )
    primary.script(500, 502)
    assert ask(gw, name, "third time") == f"{primary.name}: third time"
    assert len(primary.requests) == 3 and backup.requests == []
    primary.reset()
    primary.script(500, 500, 503)
    assert ask(gw, name, "give up") == f"{backup.name}: give up"
    assert len(primary.requests) == 3 and len(backup.requests) == 1
    # Without a fallback the last error is the answer.
    primary.reset()
    lone = router(gw, {"targets": [{"endpoint": plain(gw, primary)}], "retry": {"max_attempts": 2, "initial_backoff_ms": 10}})
    primary.script(500, 500)
    with pytest.raises(openai.APIStatusError) as err:
        ask(gw, lone, "nobody")
    assert err.value.status_code == 502
    assert len(primary.requests) == 2


def stream_text(gw: Gateway, endpoint: str, text: str) -> tuple[str, Exception | None]:
    got, error = "", None
    try:
        stream = client(gw).chat.completions.create(
            model=endpoint, messages=[{"role": "user", "content": text}], stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got += chunk.choices[0].delta.content
    except Exception as e:  # noqa: BLE001 - the test inspects it
        error = e
    return got, error


@pytest.mark.parametrize("fault", [500, "drop_before_first", ("429", 0)])
def test_stream_falls_back_before_the_first_byte(gw: Gateway, fakes, fault) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(gw, {"targets": [{"endpoint": plain(gw, primary)}], "fallbacks": [plain(gw, backup)]})
    primary.script(fault)
    got, error = stream_text(gw, name, "stream please")
    assert error is None
    assert got == f"{backup.name}: stream please"
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    assert backup.requests[0].json["stream"] is True


def test_stream_dropped_mid_way_ends_with_an_error_and_no_fallback(gw: Gateway, fakes) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, primary)}],
            "fallbacks": [plain(gw, backup)],
            "retry": {"max_attempts": 3, "initial_backoff_ms": 10},
        },
    )
    primary.script("drop_mid_stream")
    got, error = stream_text(gw, name, "one two three")
    assert got == f"{primary.name}:", "the first event reached the client"
    assert error is not None, "the stream ended with an error, not a clean end"
    time.sleep(0.3)
    assert len(primary.requests) == 1 and backup.requests == []


def test_weighted_split(gw: Gateway, fakes) -> None:
    light, heavy = fakes("light"), fakes("heavy")
    name = router(
        gw,
        {"targets": [{"endpoint": plain(gw, light), "weight": 1}, {"endpoint": plain(gw, heavy), "weight": 3}]},
    )
    n = 200
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: ask(gw, name, f"q{i}"), range(n)))
    served = Counter(a.split(":")[0] for a in answers)
    assert served[light.name] + served[heavy.name] == n
    share = served[heavy.name] / n
    assert 0.62 <= share <= 0.88, served
    assert len(light.requests) == served[light.name] and len(heavy.requests) == served[heavy.name]


def test_circuit_breaker_opens_and_recovers_after_a_probe(gw: Gateway, fakes) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, primary)}],
            "fallbacks": [plain(gw, backup)],
            "circuit_breaker": {"failure_threshold": 2, "cooldown_ms": 1500},
        },
    )
    primary.default_fault = 500
    for i in range(2):
        assert ask(gw, name, f"fail {i}") == f"{backup.name}: fail {i}"
    assert len(primary.requests) == 2
    # Open: the primary is skipped altogether.
    for i in range(3):
        assert ask(gw, name, f"open {i}") == f"{backup.name}: open {i}"
    assert len(primary.requests) == 2
    # After the cool-down one probe goes; it fails, so it opens again.
    time.sleep(1.6)
    assert ask(gw, name, "probe 1") == f"{backup.name}: probe 1"
    assert len(primary.requests) == 3
    assert ask(gw, name, "still open") == f"{backup.name}: still open"
    assert len(primary.requests) == 3
    # The primary heals; the next probe succeeds and closes the breaker.
    primary.default_fault = "ok"
    time.sleep(1.6)
    assert ask(gw, name, "probe 2") == f"{primary.name}: probe 2"
    assert ask(gw, name, "closed") == f"{primary.name}: closed"
    assert len(primary.requests) == 5


def test_all_targets_open_answers_503_with_retry_after(gw: Gateway, fakes) -> None:
    primary = fakes("primary")
    name = router(
        gw,
        {"targets": [{"endpoint": plain(gw, primary)}], "circuit_breaker": {"failure_threshold": 1, "cooldown_ms": 5000}},
    )
    primary.default_fault = 500
    with pytest.raises(openai.APIStatusError) as err:
        ask(gw, name, "first")
    assert err.value.status_code == 502
    r = requests.post(
        f"{gw.openai_base_url}/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "second"}]},
        timeout=10,
    )
    assert r.status_code == 503, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 5
    assert len(primary.requests) == 1


def test_total_timeout_bounds_retries_and_fallbacks(gw: Gateway, fakes) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, primary)}],
            "fallbacks": [plain(gw, backup)],
            "timeouts": {"attempt_ms": 800, "total_ms": 1200},
        },
    )
    primary.script("hang")
    backup.script("hang")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        ask(gw, name, "too slow")
    elapsed = time.monotonic() - started
    assert err.value.status_code == 504
    assert 1.0 <= elapsed < 3, elapsed
    assert len(primary.requests) == 1 and len(backup.requests) == 1


def test_plugin_concurrency_limit_queues_then_answers_503_in_each_dialect(tmp_path: Path, fakes) -> None:
    """--plugin-max-concurrency 1: a stream in flight holds the openai
    plugin's only slot; other requests wait for it (up to
    --plugin-busy-wait-ms, or their endpoint's attempt timeout if shorter),
    then get 503 (529 for an Anthropic client, UNAVAILABLE for a Gemini
    one) without reaching the upstream; one that arrives while it is held
    is served once the stream ends."""
    import anthropic
    from google import genai
    from google.genai import errors as genai_errors

    fake = fakes("held")
    config = tmp_path / "portico.toml"
    config.write_text("")
    args = ["--plugin-max-concurrency", "1", "--plugin-busy-wait-ms", "1200"]
    with launch_gateway(tmp_path, config, extra_args=args) as g:
        name = plain(g, fake)
        hasty = router(g, {"targets": [{"endpoint": name}], "timeouts": {"attempt_ms": 200}})
        fake.script("hold_mid_stream")
        chunks = iter(
            client(g).chat.completions.create(
                model=name, messages=[{"role": "user", "content": "held stream here"}], stream=True
            )
        )
        # Up to the first word (the role may come in a chunk of its own).
        got = ""
        while not got:
            chunk = next(chunks)
            got = (chunk.choices[0].delta.content or "") if chunk.choices else ""
        assert got == f"{fake.name}:"
        assert fake.wait_held()
        plugins = {p["id"]: p for p in api(g, "GET", "/plugins").json()}
        assert plugins["openai"]["requests_in_flight"] == 1

        def refused_after(endpoint: str, text: str) -> float:
            """Seconds until the OpenAI SDK's call is refused with the busy 503."""
            start = time.monotonic()
            with pytest.raises(openai.InternalServerError) as refused:
                client(g).chat.completions.create(model=endpoint, messages=[{"role": "user", "content": text}])
            assert refused.value.status_code == 503
            assert "at its limit of requests in flight (1, " in refused.value.message
            assert "error" in refused.value.response.json()
            return time.monotonic() - start

        waited = refused_after(name, "refused")
        assert 1.1 <= waited < 10, f"refused after {waited:.2f} s"
        # The wait is part of the attempt's time: refused when its 200 ms are spent.
        waited = refused_after(hasty, "hurried")
        assert 0.15 <= waited < 1.0, f"refused after {waited:.2f} s"

        claude = anthropic.Anthropic(base_url=g.anthropic_base_url, api_key="dummy", max_retries=0, timeout=30)
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            claude.messages.create(model=name, max_tokens=16, messages=[{"role": "user", "content": "refused too"}])
        assert overloaded.value.status_code == 529
        assert overloaded.value.body["type"] == "error"
        assert overloaded.value.body["error"]["type"] == "overloaded_error"

        gemini = genai.Client(api_key="dummy", http_options={"base_url": g.gemini_base_url})
        try:
            with pytest.raises(genai_errors.ServerError) as unavailable:
                gemini.models.generate_content(model=name, contents="refused as well")
        finally:
            gemini.close()
        assert unavailable.value.code == 503
        assert unavailable.value.status == "UNAVAILABLE"
        assert "at its limit of requests in flight (1, " in (unavailable.value.message or "")
        assert len(fake.requests) == 1, "refused calls never reached the upstream"

        with ThreadPoolExecutor(1) as pool:
            queued = pool.submit(
                lambda: client(g).chat.completions.create(model=name, messages=[{"role": "user", "content": "queued"}])
            )
            time.sleep(0.5)
            assert not queued.done(), "the call waits for the held slot"
            fake.release_held()
            rest = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert got + rest == f"{fake.name}: held stream here"
            assert queued.result(timeout=10).choices[0].message.content == f"{fake.name}: queued"
        assert [r.json["messages"][-1]["content"] for r in fake.requests] == ["held stream here", "queued"]

        metrics = requests.get(f"{g.url}/metrics", timeout=10).text
        assert 'portico_plugin_busy_total{plugin="openai"} 4' in metrics
        plugins = {p["id"]: p for p in api(g, "GET", "/plugins").json()}
        assert plugins["openai"]["requests_in_flight"] == 0


def test_concurrent_soak_loses_and_duplicates_nothing(gw: Gateway, fakes) -> None:
    a, b, backup = fakes("soak-a"), fakes("soak-b"), fakes("soak-backup")
    name = router(
        gw,
        {
            "targets": [{"endpoint": plain(gw, a), "weight": 1}, {"endpoint": plain(gw, b), "weight": 1}],
            "fallbacks": [plain(gw, backup)],
            "retry": {"max_attempts": 2, "initial_backoff_ms": 5, "max_backoff_ms": 50},
            "timeouts": {"attempt_ms": 1500},
        },
    )
    faults = [500, 503, ("429", 0), "drop", "hang", "drop_before_first"]
    a.random_faults(0.4, faults, seed=1)
    b.random_faults(0.4, faults, seed=2)
    backup.random_faults(0.05, [500], seed=3)
    rng = random.Random(7)
    plan = [(f"soak-{i}-{uuid.uuid4().hex[:8]}", rng.random() < 0.3) for i in range(200)]

    def one(item: tuple[str, bool]) -> tuple[str, str | None, str | None]:
        text, stream = item
        try:
            if stream:
                got, error = stream_text(gw, name, text)
                if error is not None:
                    return text, None, repr(error)
                return text, got, None
            return text, ask(gw, name, text, timeout=60), None
        except openai.APIError as e:
            return text, None, repr(e)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, plan))

    assert len(results) == len(plan)
    failures = [(t, e) for t, got, e in results if e is not None]
    # Every answer is exactly the one for its own request.
    for text, got, error in results:
        if error is None:
            assert got is not None and got.endswith(f": {text}"), (text, got)
    # A call fails only if all its attempts did: rare with these odds.
    assert len(failures) <= 4, failures
    # Upstream side: each successful call's request was answered exactly
    # once, by the upstream the client heard from, with the bytes sent.
    answered = Counter()
    for fake in (a, b, backup):
        for rec in fake.succeeded():
            answered[(fake.name, rec.json["messages"][-1]["content"])] += 1
    assert all(n == 1 for n in answered.values()), [k for k, n in answered.items() if n > 1]
    by_text = Counter(text for _, text in answered)
    for text, got, error in results:
        if error is None:
            server = got.split(":")[0]
            assert answered[(server, text)] == 1, text
            assert by_text[text] == 1, text
        else:
            assert by_text[text] == 0, text
    # Retries and fallbacks did happen.
    assert sum(1 for r in a.requests + b.requests if r.fault != "ok") > 20
    assert len(backup.requests) > 0


def test_policy_from_the_endpoints_file_and_persisted_across_restarts(tmp_path: Path, fakes) -> None:
    primary, backup = fakes("file-primary"), fakes("file-backup")
    config = tmp_path / "portico.toml"
    config.write_text(
        "[[endpoints]]\n"
        'name = "p"\nprovider = "openai"\nmodel = "fake-model"\n'
        f'config = {{ api_key = "sk-test", base_url = "{primary.base_url_v1}" }}\n\n'
        "[[endpoints]]\n"
        'name = "b"\nprovider = "openai"\nmodel = "fake-model"\n'
        f'config = {{ api_key = "sk-test", base_url = "{backup.base_url_v1}" }}\n\n'
        "[[endpoints]]\n"
        'name = "routed"\n'
        "[endpoints.policy]\n"
        'fallbacks = ["b"]\n'
        "[[endpoints.policy.targets]]\n"
        'endpoint = "p"\nweight = 2\n'
        "[endpoints.policy.retry]\n"
        "max_attempts = 2\ninitial_backoff_ms = 10\n"
        "[endpoints.policy.limits]\n"
        "requests_per_minute = 1000\n"
    )
    with launch_gateway(tmp_path, config) as gw:
        got = api(gw, "GET", "/endpoints/routed").json()
        assert got["source"] == "file" and got["provider"] == ""
        assert got["policy"]["targets"] == [{"endpoint": "p", "weight": 2}]
        assert got["policy"]["limits"]["requests_per_minute"] == 1000
        primary.script(500, 500)
        assert ask(gw, "routed", "from the file") == f"{backup.name}: from the file"
        assert len(primary.requests) == 2
        created = api(
            gw,
            "POST",
            "/endpoints",
            {"name": "api-router", "policy": {"targets": [{"endpoint": "b"}], "circuit_breaker": {"failure_threshold": 3}}},
        )
        assert created.status_code == 201, created.text
    # A file that breaks the routing rules is refused as a whole.
    bad = config.read_text() + '\n[[endpoints]]\nname = "nested"\n[[endpoints.policy.targets]]\nendpoint = "routed"\n'
    config.write_text(bad)
    with launch_gateway(tmp_path, config) as gw:
        policy = api(gw, "GET", "/endpoints/api-router").json()["policy"]
        assert policy["targets"] == [{"endpoint": "b", "weight": 1}]
        assert policy["circuit_breaker"] == {"failure_threshold": 3, "cooldown_ms": 30000}
        assert api(gw, "GET", "/endpoints/nested").status_code == 404
        assert "no nesting" in gw.log_text()
        assert ask(gw, "api-router", "still here") == f"{backup.name}: still here"


def test_ui_routing_section_creates_a_router(gw: Gateway, fakes, tmp_path: Path) -> None:
    """The endpoint form's Routing section: a router with a weighted
    target, a fallback, retries, a breaker and limits, saved through the
    API and serving requests."""
    from selenium.webdriver.support.ui import Select
    from ui_helpers import Page, browser_errors, make_driver, require_browser

    require_browser()
    primary, backup = fakes("ui-primary"), fakes("ui-backup")
    p, b = plain(gw, primary), plain(gw, backup)
    driver = make_driver(tmp_path / "profile")
    try:
        page = Page(driver, gw.url)
        page.open("/endpoints/new")
        page.fill("#endpoint-name", "ui-router")
        page.click("#routing-section > summary")  # collapsed for a new endpoint
        page.click("#endpoint-router")
        page.gone("#model-section")
        page.gone("#endpoint-provider")
        page.click("#add-target")
        Select(page.find('#routing-targets .routing-row select')).select_by_value(p)
        page.fill("#routing-targets .routing-weight", "3")
        page.click("#add-fallback")
        Select(page.find('#routing-fallbacks .routing-row select')).select_by_value(b)
        page.fill("#retry-max-attempts", "2")
        page.fill("#retry-initial-backoff", "10")
        page.click("#breaker-enabled")
        page.fill("#breaker-threshold", "4")
        page.fill("#limit-rpm", "600")
        page.click("#endpoint-submit")
        page.wait(lambda d: "#/endpoints/ui-router" in d.current_url, "the detail page")
        page.text_in("[data-policy='Targets']", f"{p} (weight 3)")
        page.text_in("[data-policy='Fallbacks']", b)
        assert not browser_errors(driver)
        got = api(gw, "GET", "/endpoints/ui-router").json()
        assert got["provider"] == ""
        policy = got["policy"]
        assert policy["targets"] == [{"endpoint": p, "weight": 3}] and policy["fallbacks"] == [b]
        assert policy["retry"]["max_attempts"] == 2 and policy["retry"]["initial_backoff_ms"] == 10
        assert policy["circuit_breaker"] == {"failure_threshold": 4, "cooldown_ms": 30000}
        assert policy["limits"] == {"requests_per_minute": 600, "tokens_per_minute": None}
        # Editing keeps the routing as it was.
        page.open("/endpoints/ui-router/edit")
        assert page.find("#endpoint-router").is_selected()
        assert Select(page.find("#routing-targets select")).first_selected_option.get_attribute("value") == p
        page.click("#endpoint-submit")
        page.wait(lambda d: d.current_url.endswith("#/endpoints/ui-router"), "the detail page after saving")
        assert api(gw, "GET", "/endpoints/ui-router").json()["policy"] == policy
    finally:
        driver.quit()
    primary.script(500, 500)
    assert ask(gw, "ui-router", "from the ui") == f"{backup.name}: from the ui"
