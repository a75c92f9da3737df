"""The Usage page of the web UI, in headless Chromium: after a few calls
through the gateway it shows the totals, four SVG charts over time
(requests, tokens, cost, latency) with accessible names, and a table
grouped by endpoint or provider; readable in light and dark themes."""

from __future__ import annotations

import time

import openai
import pytest
import requests

from conftest import CHAT
from harness import Gateway
from ui_helpers import Page, browser_errors, make_driver, screenshot, set_color_scheme

CALLS = 3


@pytest.fixture
def page(request, tmp_path_factory, gateway: Gateway):
    driver = make_driver(tmp_path_factory.mktemp("chromium-usage") / "profile")
    pg = Page(driver, gateway.url)
    yield pg
    screenshot(driver, f"{request.node.name}-final")
    errors = browser_errors(driver)
    driver.quit()
    assert not errors, f"JavaScript errors on the page: {errors}"


def chat_usage(gw: Gateway) -> int:
    """Usage API request count of the chat endpoint over the last day."""
    rows = requests.get(f"{gw.url}/api/v1/usage", params={"group_by": "endpoint"}, timeout=10).json()["rows"]
    return next((r["requests"] for r in rows if r["endpoint"] == CHAT), 0)


def test_usage_page_renders_totals_charts_and_table(page: Page, gateway: Gateway):
    before = chat_usage(gateway)
    client = openai.OpenAI(base_url=gateway.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
    for _ in range(CALLS):
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "usage page"}])
    deadline = time.monotonic() + 10
    while chat_usage(gateway) < before + CALLS:
        assert time.monotonic() < deadline, "calls not logged"
        time.sleep(0.2)
    expected = chat_usage(gateway)

    page.open("/usage")
    assert page.find('a[data-nav="usage"]').get_attribute("aria-current") == "page"
    assert "Usage" in page.driver.title
    requests_stat = page.find('[data-stat="requests"] .usage-stat-value')
    assert int(requests_stat.text.replace(",", "")) >= expected

    charts = page.find_all("figure.usage-chart")
    assert [c.get_attribute("data-chart") for c in charts] == ["requests", "tokens", "cost", "latency"]
    for chart in charts:
        svg = chart.find_element("css selector", "svg")
        assert svg.get_attribute("role") == "img"
        label = svg.get_attribute("aria-label")
        assert label and "buckets" in label, label
        assert svg.size["width"] > 200 and svg.size["height"] > 100
    # The calls are drawn: bars in the requests and tokens charts, a latency line.
    assert page.find_all('[data-chart="requests"] rect.chart-series-0')
    assert page.find_all('[data-chart="tokens"] rect.chart-series-0')
    assert page.find_all('[data-chart="latency"] circle.chart-series-0')
    assert "Succeeded" in page.find('[data-chart="requests"] svg').get_attribute("aria-label")

    # The table, grouped by endpoint, then by provider.
    row = page.find(f'.usage-table tr[data-group="{CHAT}"]')
    assert int(row.find_element("css selector", '[data-col="requests"]').text.replace(",", "")) == expected
    # Latency percentiles: the table's p95 is the API's, the stat names all three.
    rows = requests.get(f"{gateway.url}/api/v1/usage", params={"group_by": "endpoint"}, timeout=10).json()["rows"]
    p95 = next(r["p95_latency_ms"] for r in rows if r["endpoint"] == CHAT)
    assert row.find_element("css selector", '[data-col="p95_latency"]').text == (
        f"{p95} ms" if p95 < 1000 else f"{p95 / 1000:.2f} s"
    )
    latency_note = page.find('[data-stat="latency"]').text
    assert all(f"{q} " in latency_note for q in ("p50", "p95", "p99")), latency_note
    legend = page.find('[data-chart="latency"] .chart-legend').text
    assert "p95 latency" in legend, legend
    for control in ("usage-range", "usage-group"):
        assert page.find(f"#{control}").get_attribute("aria-label")
    page.js(
        "const s = document.getElementById('usage-group'); s.value = 'provider';"
        "s.dispatchEvent(new Event('change'));"
    )
    page.find('.usage-table tr[data-group="openai"]')
    page.js(
        "const s = document.getElementById('usage-range'); s.value = '1h';"
        "s.dispatchEvent(new Event('change'));"
    )
    page.wait(lambda d: "buckets of one minute" in page.find('[data-chart="requests"] svg').get_attribute("aria-label"), "minute buckets")
    screenshot(page.driver, "usage-light")

    # Dark theme: the bars stay visible against the card.
    set_color_scheme(page.driver, "dark")
    page.open("/usage")
    page.find("figure.usage-chart")
    colors = page.js(
        "const bar = document.querySelector('[data-chart=\"requests\"] rect.chart-series-0');"
        "const card = document.querySelector('figure.usage-chart');"
        "return [getComputedStyle(bar).fill, getComputedStyle(card).backgroundColor];"
    )
    assert colors[0] != colors[1], colors
    screenshot(page.driver, "usage-dark")
