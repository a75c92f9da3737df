"""The web UI served by the gateway at `/`, driven in headless Chromium.

A real gateway (all built plugins, an empty endpoints file) and the fake
OpenAI upstream: endpoints are created, edited and deleted through the page,
then called with the official SDKs. Screenshots of every screen land in
tests/artifacts/ (ui-*.png)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys

import openai
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from fake_openai import FakeOpenAI
from harness import PLUGINS_DIR, Gateway, launch_gateway, require_built
from ui_helpers import (
    Page,
    browser_errors,
    clear_viewport,
    make_driver,
    screenshot,
    set_color_scheme,
    set_viewport,
)

ADMIN_TOKEN = "ui-admin-token-7f3a"
CAPABILITY_LABELS = {
    "tools": "Tools",
    "reasoning": "Reasoning",
    "prompt_caching": "Caching",
    "vision": "Vision",
    "embeddings": "Embeddings",
}


# -- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_gateway(tmp_path_factory) -> Gateway:
    require_built("openai")
    work = tmp_path_factory.mktemp("ui-gateway")
    config = work / "portico.toml"
    config.write_text("# no endpoints: the UI creates them\n")
    with launch_gateway(work, config) as gw:
        yield gw


@pytest.fixture(scope="module")
def locked_gateway(tmp_path_factory) -> Gateway:
    """Started with an admin token, an endpoint declared in its endpoints
    file, and a plugins folder holding the openai plugin next to a file that
    is no WebAssembly at all."""
    require_built("openai")
    work = tmp_path_factory.mktemp("ui-locked")
    plugins = work / "plugins"
    plugins.mkdir()
    shutil.copy(PLUGINS_DIR / "openai.wasm", plugins / "openai.wasm")
    (plugins / "broken.wasm").write_bytes(b"this is not a wasm component\n")
    config = work / "portico.toml"
    config.write_text(
        '[[endpoints]]\nname = "from-file"\nprovider = "openai"\nmodel = "gpt-4.1-mini"\n'
        '[endpoints.config]\napi_key = "sk-declared-in-file"\n'
    )
    with launch_gateway(work, config, extra_args=["--admin-token", ADMIN_TOKEN], plugins_dir=plugins) as gw:
        yield gw


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    work = tmp_path_factory.mktemp("chromium")
    drv = make_driver(work / "profile")
    yield drv
    drv.quit()


@pytest.fixture
def page(request, driver, ui_gateway: Gateway) -> Page:
    """The UI of `ui_gateway` in a light, desktop-sized window. Ends with a
    screenshot and fails on JavaScript errors logged by the page."""
    clear_viewport(driver)
    set_color_scheme(driver, "light")
    browser_errors(driver)  # drop what earlier tests logged
    pg = Page(driver, ui_gateway.url)
    yield pg
    screenshot(driver, f"{request.node.name}-final")
    errors = browser_errors(driver)
    assert not errors, f"JavaScript errors on the page: {errors}"


# -- helpers ----------------------------------------------------------------


def api(gw: Gateway, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{gw.url}/api/v1{path}", headers=headers, timeout=10, **kwargs)


def create_via_api(gw: Gateway, name: str, fake: FakeOpenAI, model: str = "gpt-4.1-mini") -> None:
    api(gw, "DELETE", f"/endpoints/{name}")
    r = api(
        gw,
        "POST",
        "/endpoints",
        json={
            "name": name,
            "provider": "openai",
            "model": model,
            "config": {"api_key": fake.api_key, "base_url": fake.base_url},
        },
    )
    assert r.status_code == 201, r.text


def openai_catalog(gw: Gateway) -> dict[str, dict]:
    providers = api(gw, "GET", "/providers").json()
    openai_info = next(p for p in providers if p["id"] == "openai")
    return {m["id"]: m for m in openai_info["models"]}


def compact(n: int) -> str:
    """The page's compact token counts: 400000 → 400K, 1047576 → 1M."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def dollars(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\$([0-9]+(?:\.[0-9]+)?)", text)]


def chat(gw: Gateway, model: str, text: str) -> str:
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="dummy", max_retries=0, timeout=30)
    response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return response.choices[0].message.content


def open_form(page: Page) -> None:
    page.open("/endpoints/new")
    page.find("#endpoint-form")
    Select(page.find("#endpoint-provider")).select_by_value("openai")
    page.find('label.model-option[data-model="gpt-4.1-mini"]')


def choose_model(page: Page, model_id: str) -> None:
    page.click(f'label.model-option[data-model="{model_id}"]')
    radio = page.driver.find_element(By.CSS_SELECTOR, f'input[name="model"][value="{model_id}"]')
    assert radio.is_selected(), f"model {model_id} not selected"


def snippet_code(page: Page, sdk: str) -> str:
    return page.driver.find_element(By.CSS_SELECTOR, f"#panel-{sdk} pre").get_attribute("textContent")


# -- tests ------------------------------------------------------------------


def test_empty_state_guides_to_the_first_endpoint(page: Page, ui_gateway: Gateway):
    for endpoint in api(ui_gateway, "GET", "/endpoints").json():
        api(ui_gateway, "DELETE", f"/endpoints/{endpoint['name']}")

    page.open()
    empty = page.find('[data-empty="endpoints"]')
    assert "No endpoints yet" in empty.text
    assert "model" in empty.text
    page.find('a[aria-current="page"][data-nav="endpoints"]')
    screenshot(page.driver, "endpoints-empty")

    page.click('[data-empty="endpoints"] a[href="#/endpoints/new"]')
    page.find("#endpoint-form")
    # Every loaded provider is offered.
    offered = {o.get_attribute("value") for o in Select(page.find("#endpoint-provider")).options}
    loaded = {p["id"] for p in api(ui_gateway, "GET", "/providers").json()}
    assert offered == loaded


def test_create_an_endpoint_in_the_form_and_call_it_with_the_sdks(
    page: Page, ui_gateway: Gateway, fake_upstream: FakeOpenAI
):
    api(ui_gateway, "DELETE", "/endpoints/ui-chat")
    open_form(page)
    choose_model(page, "gpt-4.1-mini")
    page.fill("#endpoint-name", "ui-chat")

    # Config fields rendered by kind: the key is a password input, the base
    # URL a url input showing its default as placeholder.
    key = page.find("#cfg-api_key")
    assert key.get_attribute("type") == "password"
    assert key.get_attribute("required") is not None
    base = page.find("#cfg-base_url")
    assert base.get_attribute("type") == "url"
    assert base.get_attribute("placeholder") == "https://api.openai.com/v1"
    assert page.find('[data-config="api_key"] .req')
    assert page.find('[data-config="base_url"] .help').text

    page.fill("#cfg-api_key", fake_upstream.api_key)
    page.fill("#cfg-base_url", fake_upstream.base_url)
    screenshot(page.driver, "endpoint-form-filled")
    page.click("#endpoint-submit")

    # Created: the detail page with the snippets.
    page.find('#connect [data-snippet="openai"] pre')
    page.text_in(".toast", "ui-chat")
    assert page.driver.current_url.endswith("#/endpoints/ui-chat")
    stored = api(ui_gateway, "GET", "/endpoints/ui-chat").json()
    assert stored["provider"] == "openai"
    assert stored["model"] == "gpt-4.1-mini"
    assert stored["config"]["base_url"] == fake_upstream.base_url
    assert stored["config"]["api_key"] == "********"
    assert "api_key" in stored["secrets_set"]
    screenshot(page.driver, "endpoint-detail")

    # Snippets use the page's own origin and the endpoint name.
    snippets = {sdk: snippet_code(page, sdk) for sdk in ("openai", "anthropic", "gemini")}
    assert f'base_url="{ui_gateway.url}/gateway/openai/v1"' in snippets["openai"]
    assert f'base_url="{ui_gateway.url}/gateway/anthropic"' in snippets["anthropic"]
    assert f'base_url="{ui_gateway.url}/gateway/gemini"' in snippets["gemini"]
    for code in snippets.values():
        assert 'api_key="dummy"' in code
        assert 'model="ui-chat"' in code
    copy = page.find('#panel-openai .codeblock button.copy')
    copy.click()
    page.wait(lambda d: "Copied" in copy.text, "the copy button to confirm")
    page.click("#tab-gemini")
    page.find("#panel-gemini pre")
    assert not page.driver.find_element(By.CSS_SELECTOR, "#panel-openai").is_displayed()
    screenshot(page.driver, "endpoint-detail-gemini-tab")

    # Listed, with provider display name, model, badges and source.
    page.go("/endpoints")
    row = page.find('tr[data-endpoint="ui-chat"]')
    assert "OpenAI" in row.find_element(By.CSS_SELECTOR, '[data-col="provider"]').text
    assert "GPT-4.1 mini" in row.find_element(By.CSS_SELECTOR, '[data-col="model"]').text
    badges = {b.text for b in row.find_elements(By.CSS_SELECTOR, "[data-capability]")}
    caps = openai_catalog(ui_gateway)["gpt-4.1-mini"]["capabilities"]
    assert badges == {CAPABILITY_LABELS[k] for k, on in caps.items() if on}
    assert row.find_element(By.CSS_SELECTOR, '[data-col="source"]').text == "API"
    screenshot(page.driver, "endpoints-list")

    # The endpoint works for the official SDK, straight away.
    assert chat(ui_gateway, "ui-chat", "Hello from the UI") == "Echo: Hello from the UI"
    rec = fake_upstream.only_request()
    assert rec.json["model"] == "gpt-4.1-mini"
    assert rec.headers["authorization"] == f"Bearer {fake_upstream.api_key}"

    # And each copy-paste snippet runs as shown.
    for sdk, code in snippets.items():
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{sdk} snippet failed:\n{result.stderr[-3000:]}"
        assert "Echo: Hello!" in result.stdout, f"{sdk} snippet printed {result.stdout!r}"


def test_embedding_endpoint_gets_embedding_snippets_that_run(
    page: Page, ui_gateway: Gateway, fake_upstream: FakeOpenAI
):
    model_id = next(m for m, info in openai_catalog(ui_gateway).items() if info["capabilities"]["embeddings"])
    create_via_api(ui_gateway, "ui-embed", fake_upstream, model=model_id)
    page.open("/endpoints/ui-embed")
    page.find("#connect")
    assert page.find('[data-model] [data-capability="embeddings"]').text == "Embeddings"

    # The Anthropic API has no embeddings: a note instead of code.
    page.click("#tab-anthropic")
    assert "no embeddings" in page.find("#panel-anthropic .alert").text
    assert not page.find_all("#panel-anthropic pre")
    screenshot(page.driver, "endpoint-detail-embeddings")

    for sdk in ("openai", "gemini"):
        code = snippet_code(page, sdk)
        assert 'model="ui-embed"' in code
        fake_upstream.reset()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{sdk} snippet failed:\n{result.stderr[-3000:]}"
        rec = fake_upstream.only_request()
        assert rec.path == "/v1/embeddings"
        dimensions = len(rec.response_json["data"][0]["embedding"])
        assert result.stdout.strip() == str(dimensions), f"{sdk} snippet printed {result.stdout!r}"


def test_model_selector_shows_catalog_badges_prices_and_context(page: Page, ui_gateway: Gateway):
    catalog = openai_catalog(ui_gateway)
    open_form(page)
    for model_id, model in catalog.items():
        option = page.driver.find_element(By.CSS_SELECTOR, f'label.model-option[data-model="{model_id}"]')
        text = option.get_attribute("textContent")
        assert model["display_name"] in text
        badges = {
            b.get_attribute("data-capability"): b.get_attribute("textContent")
            for b in option.find_elements(By.CSS_SELECTOR, "[data-capability]")
        }
        expected = {k: CAPABILITY_LABELS[k] for k, on in model["capabilities"].items() if on}
        assert badges == expected, model_id
        assert f"{compact(model['context_window'])} context" in text, (model_id, text)
        price = option.find_element(By.CSS_SELECTOR, ".price").get_attribute("textContent")
        shown = dollars(price)
        if model["capabilities"].get("embeddings") and not model["output_price_per_mtok"]:
            assert shown == [pytest.approx(model["input_price_per_mtok"])], (model_id, price)
        else:
            assert shown == [
                pytest.approx(model["input_price_per_mtok"]),
                pytest.approx(model["output_price_per_mtok"]),
            ], (model_id, price)
            assert "1M" in price
    # Every capability the catalog uses has its badge somewhere.
    used = {k for m in catalog.values() for k, on in m["capabilities"].items() if on}
    for capability in used:
        assert page.find_all(f'.model-list [data-capability="{capability}"]'), capability

    # Search narrows the list; a custom id is always possible.
    page.fill("#model-search", "nano")
    page.wait(
        lambda d: all(
            "nano" in o.get_attribute("data-model")
            for o in d.find_elements(By.CSS_SELECTOR, "label.model-option:not(.custom)")
            if o.is_displayed()
        ),
        "the search to hide non-matching models",
    )
    page.find('label.model-option[data-model="gpt-4.1-nano"]')
    page.find("#custom-model").send_keys("my-fine-tune")
    assert page.driver.find_element(By.CSS_SELECTOR, 'input[name="model"][value="__custom__"]').is_selected()
    assert page.find("#endpoint-name").get_attribute("value") == "my-fine-tune"
    screenshot(page.driver, "model-selector")


def test_validation_errors_are_shown_inline(page: Page, ui_gateway: Gateway, fake_upstream: FakeOpenAI):
    create_via_api(ui_gateway, "ui-taken", fake_upstream)
    before = len(api(ui_gateway, "GET", "/endpoints").json())

    # Checked in the page: a missing required secret, a bad name.
    open_form(page)
    page.fill("#endpoint-name", "-bad name")
    page.click("#endpoint-submit")
    page.find("#cfg-api_key-error")
    assert page.find("#cfg-api_key").get_attribute("aria-invalid") == "true"
    assert page.find("#endpoint-name").get_attribute("aria-invalid") == "true"
    assert page.find("#endpoint-name-error").text
    assert len(api(ui_gateway, "GET", "/endpoints").json()) == before

    # Checked by the API: the name is taken. Its message is shown as is.
    expected = api(
        ui_gateway,
        "POST",
        "/endpoints",
        json={"name": "ui-taken", "provider": "openai", "model": "gpt-4.1-mini", "config": {"api_key": "k"}},
    )
    assert expected.status_code == 409
    message = expected.json()["error"]["message"]
    page.fill("#endpoint-name", "ui-taken")
    page.fill("#cfg-api_key", "sk-anything")
    page.click("#endpoint-submit")
    banner = page.text_in("#form-error", message)
    assert banner.get_attribute("role") == "alert"
    page.text_in("#endpoint-name-error", message)
    assert page.driver.current_url.endswith("#/endpoints/new")
    screenshot(page.driver, "validation-errors")


def test_edit_keeps_the_secret_unless_retyped(page: Page, ui_gateway: Gateway, fake_upstream: FakeOpenAI):
    create_via_api(ui_gateway, "ui-edit", fake_upstream, model="gpt-4.1-mini")
    page.open("/endpoints/ui-edit/edit")
    page.find("#endpoint-form")
    key = page.find("#cfg-api_key")
    assert key.get_attribute("value") == "********"
    assert page.find("#cfg-base_url").get_attribute("value") == fake_upstream.base_url
    assert page.find("#endpoint-name").get_attribute("readonly") is not None
    assert page.driver.find_element(By.CSS_SELECTOR, 'input[name="model"][value="gpt-4.1-mini"]').is_selected()
    screenshot(page.driver, "endpoint-edit")

    # Another model, the key untouched: the stored key still goes upstream.
    choose_model(page, "gpt-4.1-nano")
    page.click("#endpoint-submit")
    page.text_in(".toast", "saved")
    page.find("#connect")
    assert api(ui_gateway, "GET", "/endpoints/ui-edit").json()["model"] == "gpt-4.1-nano"
    fake_upstream.reset()
    assert chat(ui_gateway, "ui-edit", "after edit") == "Echo: after edit"
    rec = fake_upstream.only_request()
    assert rec.json["model"] == "gpt-4.1-nano"
    assert rec.headers["authorization"] == f"Bearer {fake_upstream.api_key}"

    # A retyped key replaces it.
    page.go("/endpoints/ui-edit/edit")
    page.fill("#cfg-api_key", "sk-retyped-key")
    page.click("#endpoint-submit")
    page.text_in(".toast", "saved")
    page.find("#connect")
    fake_upstream.reset()
    with pytest.raises(openai.AuthenticationError):
        chat(ui_gateway, "ui-edit", "with the new key")
    assert fake_upstream.only_request().headers["authorization"] == "Bearer sk-retyped-key"


def test_delete_asks_for_confirmation(page: Page, ui_gateway: Gateway, fake_upstream: FakeOpenAI):
    create_via_api(ui_gateway, "ui-delete", fake_upstream)
    page.open("/endpoints")
    page.click('tr[data-endpoint="ui-delete"] [data-action="delete"]')
    dialog = page.find("#confirm-dialog[open]")
    assert "ui-delete" in dialog.text
    screenshot(page.driver, "delete-confirm")

    page.click("#confirm-cancel")
    page.gone("#confirm-dialog[open]")
    assert api(ui_gateway, "GET", "/endpoints/ui-delete").status_code == 200
    page.find('tr[data-endpoint="ui-delete"]')

    page.click('tr[data-endpoint="ui-delete"] [data-action="delete"]')
    page.click("#confirm-ok")
    page.gone('tr[data-endpoint="ui-delete"]')
    page.text_in(".toast", "deleted")
    assert api(ui_gateway, "GET", "/endpoints/ui-delete").status_code == 404
    with pytest.raises(openai.NotFoundError):
        chat(ui_gateway, "ui-delete", "gone?")


def test_plugins_page_shows_the_loaded_openai_plugin(page: Page, ui_gateway: Gateway):
    page.open("/plugins")
    card = page.find('[data-plugin="openai"]')
    assert card.get_attribute("data-status") == "loaded"
    status = {p["id"]: p for p in api(ui_gateway, "GET", "/plugins").json()}["openai"]
    sha = hashlib.sha256((PLUGINS_DIR / "openai.wasm").read_bytes()).hexdigest()

    def field(name: str):
        return card.find_element(By.CSS_SELECTOR, f'[data-field="{name}"]')

    assert "OpenAI" in card.text and "Loaded" in card.text
    assert field("version").text == status["version"]
    assert field("wit_version").text == status["wit_version"]
    assert field("file").text == "openai.wasm"
    short = field("sha256").find_element(By.CSS_SELECTOR, "code")
    assert short.text == sha[:12]
    assert short.get_attribute("title") == sha
    assert field("loaded_at").find_element(By.TAG_NAME, "time").get_attribute("datetime") == status["loaded_at"]
    assert set(field("operations").text.split()) >= {"Chat", "Streaming", "Embeddings"}
    assert not card.find_elements(By.CSS_SELECTOR, '[data-role="last-error"]')
    screenshot(page.driver, "plugins")


def test_admin_token_prompt_and_plugin_load_errors(page: Page, locked_gateway: Gateway):
    assert api(locked_gateway, "GET", "/endpoints").status_code == 401
    page.base_url = locked_gateway.url
    page.open()

    # The page loads without the token, then asks for it.
    page.find("#token-dialog[open]")
    screenshot(page.driver, "admin-token-prompt")
    page.fill("#token-input", "wrong-token")
    page.click("#token-submit")
    page.text_in("#token-error", "not accepted")
    page.find("#token-dialog[open]")

    page.fill("#token-input", ADMIN_TOKEN)
    page.click("#token-submit")
    page.gone("#token-dialog[open]")
    row = page.find('tr[data-endpoint="from-file"]')
    assert page.js("return sessionStorage.getItem('portico.adminToken')") == ADMIN_TOKEN

    # An endpoint from the file is marked so, and offers no edit or delete
    # (the API refuses those: the file is the source of truth).
    assert row.find_element(By.CSS_SELECTOR, '[data-col="source"]').text == "File"
    assert not row.find_elements(By.CSS_SELECTOR, '[data-action="edit"], [data-action="delete"]')
    screenshot(page.driver, "endpoints-list-locked")

    # Kept for the tab: a reload does not ask again.
    page.driver.refresh()
    page.find('tr[data-endpoint="from-file"]')
    assert not page.find_all("#token-dialog[open]")
    page.go("/endpoints/from-file")
    page.text_in("main .page-actions", "Managed in the endpoints file")
    assert not page.find_all('main [data-action="delete"]')

    # The plugins page highlights the file that failed to load.
    page.go("/plugins")
    broken = page.find('[data-plugin="broken.wasm"]')
    assert broken.get_attribute("data-status") == "failed"
    error = broken.find_element(By.CSS_SELECTOR, '[data-role="last-error"]')
    assert error.get_attribute("role") == "alert"
    last_error = {p["file"]: p for p in api(locked_gateway, "GET", "/plugins", token=ADMIN_TOKEN).json()}[
        "broken.wasm"
    ]["last_error"]
    assert last_error and last_error in error.text
    assert page.find('[data-plugin="openai"]').get_attribute("data-status") == "loaded"
    screenshot(page.driver, "plugins-with-error")

    # Forgetting the token locks the page again.
    page.click("#forget-token")
    page.find("#token-dialog[open]")
    page.click("#token-cancel")
    page.text_in("main", "Admin token required")
    assert page.js("return sessionStorage.getItem('portico.adminToken')") is None


def test_dark_theme_and_small_screens(page: Page, ui_gateway: Gateway, fake_upstream: FakeOpenAI):
    create_via_api(ui_gateway, "ui-looks", fake_upstream, model="gpt-5")

    def background_luminance() -> float:
        rgb = page.js("return getComputedStyle(document.body).backgroundColor")
        r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    page.open("/endpoints")
    page.find('tr[data-endpoint="ui-looks"]')
    assert background_luminance() > 0.8

    set_color_scheme(page.driver, "dark")
    page.wait(lambda d: background_luminance() < 0.2, "the dark palette")
    screenshot(page.driver, "endpoints-list-dark")
    page.go("/endpoints/ui-looks")
    page.find("#connect")
    screenshot(page.driver, "endpoint-detail-dark")
    page.go("/endpoints/new")
    page.find("#endpoint-form")
    screenshot(page.driver, "endpoint-form-dark")

    # The theme switch overrides the system preference.
    page.click("#theme-toggle")  # system → light
    page.wait(lambda d: background_luminance() > 0.8, "the light palette")
    page.click("#theme-toggle")  # light → dark
    page.click("#theme-toggle")  # dark → system
    page.js("localStorage.removeItem('portico.theme')")
    set_color_scheme(page.driver, "light")

    for hash_path, ready, shot in (
        ("/endpoints", 'tr[data-endpoint="ui-looks"]', "endpoints-list-mobile"),
        ("/endpoints/new", "#endpoint-form", "endpoint-form-mobile"),
        ("/endpoints/ui-looks", "#connect", "endpoint-detail-mobile"),
    ):
        set_viewport(page.driver, 390, 844)
        page.open(hash_path)
        page.find(ready)
        page.wait(
            lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"),
            f"{hash_path} to fit a 390 px wide screen",
        )
        screenshot(page.driver, shot)
    clear_viewport(page.driver)
