"""The Keys page of the web UI, in headless Chromium, on a gateway started
with --require-keys and an admin token: a key is created (shown once, with
a copy button), works with the OpenAI SDK, is listed by prefix only, and
revoked after a confirmation."""

from __future__ import annotations

import openai
import pytest
import requests
from selenium.webdriver.common.by import By

from conftest import CHAT, KEY_VAR, write_config
from fake_openai import FakeOpenAI
from harness import Gateway, free_port, launch_gateway, require_built
from ui_helpers import Page, browser_errors, make_driver, screenshot

ADMIN_TOKEN = "ui-keys-admin-5c1d"


@pytest.fixture(scope="module")
def keys_gateway(fake_upstream: FakeOpenAI, upstream_key: str, tmp_path_factory) -> Gateway:
    require_built("openai")
    work = tmp_path_factory.mktemp("ui-keys-gateway")
    config = work / "portico.toml"
    write_config(config, fake_upstream, down_port=free_port())
    with launch_gateway(
        work, config, env={KEY_VAR: upstream_key}, extra_args=["--require-keys", "--admin-token", ADMIN_TOKEN]
    ) as gw:
        yield gw


@pytest.fixture
def page(request, tmp_path_factory, keys_gateway: Gateway):
    driver = make_driver(tmp_path_factory.mktemp("chromium-keys") / "profile")
    pg = Page(driver, keys_gateway.url)
    yield pg
    screenshot(driver, f"{request.node.name}-final")
    errors = browser_errors(driver)
    driver.quit()
    assert not errors, f"JavaScript errors on the page: {errors}"


def chat(gw: Gateway, key: str) -> str:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0, timeout=30)
    response = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "from the ui"}])
    return response.choices[0].message.content


def test_keys_page_creates_lists_and_revokes(page: Page, keys_gateway: Gateway):
    page.open("/keys")
    page.fill("#token-input", ADMIN_TOKEN)
    page.click("#token-submit")
    page.find('[data-empty="keys"]')
    nav = page.find('a[data-nav="keys"]')
    assert nav.get_attribute("aria-current") == "page"
    assert "Keys" in page.driver.title

    # Every control has a label; an empty name is refused on the page.
    for control in ("key-name", "key-endpoints", "key-rpm", "key-tpm"):
        assert page.find_all(f'label[for="{control}"]'), control
    page.fill("#key-rpm", "0")
    page.click("#key-submit")
    page.text_in("#key-name-error", "Enter a name")
    assert page.find("#key-name").get_attribute("aria-invalid") == "true"
    page.text_in("#key-rpm-error", "at least 1")

    page.fill("#key-name", "reporting app")
    page.fill("#key-endpoints", f"{CHAT}, other")
    page.fill("#key-rpm", "120")
    page.fill("#key-tpm", "50000")
    page.click("#key-submit")
    value = page.find("#new-key-value")
    key = value.get_attribute("value")
    assert key.startswith("pk_") and len(key) == 43
    screenshot(page.driver, "keys-created")
    copy = page.find('#new-key button[aria-label="Copy the key"]')
    copy.click()
    page.wait(lambda d: "copied" in (copy.get_attribute("class") or ""), "the copy button to confirm")

    row = page.find('tr[data-status="active"]')
    assert row.find_element(By.CSS_SELECTOR, '[data-col="prefix"]').text == key[:10] + "…"
    assert row.find_element(By.CSS_SELECTOR, '[data-col="endpoints"]').text == f"{CHAT}, other"
    assert row.find_element(By.CSS_SELECTOR, '[data-col="limits"]').text == "120 req/min · 50K tok/min"
    assert "Never" in row.find_element(By.CSS_SELECTOR, '[data-col="last_used"]').text

    # The key works; after a reload the page no longer shows it.
    assert chat(keys_gateway, key) == "Echo: from the ui"
    page.open("/keys")
    page.find('tr[data-status="active"]')
    assert not page.find_all("#new-key-value")
    assert key[10:] not in page.driver.page_source

    # Revoke: cancel first, then confirm.
    page.click('tr[data-status="active"] [data-action="revoke"]')
    page.find("#confirm-dialog[open]")
    assert "reporting app" in page.find("#confirm-title").text
    page.click("#confirm-cancel")
    page.gone("#confirm-dialog[open]")
    assert page.find_all('tr[data-status="active"]')
    page.click('tr[data-status="active"] [data-action="revoke"]')
    page.click("#confirm-ok")
    revoked = page.find('tr[data-status="revoked"]')
    assert revoked.find_element(By.CSS_SELECTOR, '[data-col="status"]').text == "Revoked"
    assert not revoked.find_elements(By.CSS_SELECTOR, '[data-action="revoke"]')
    screenshot(page.driver, "keys-revoked")
    with pytest.raises(openai.AuthenticationError):
        chat(keys_gateway, key)
    listed = requests.get(
        f"{keys_gateway.url}/api/v1/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    ).json()
    assert [k["status"] for k in listed] == ["revoked"]
