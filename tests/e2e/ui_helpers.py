"""Headless Chromium for the web UI tests: a Selenium driver on Debian's
chromium + chromedriver (installed by `scripts/setup browser`), waits that
fail with a useful message, and screenshots saved under tests/artifacts/."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from harness import REPO

CHROMIUM = Path(os.environ.get("PORTICO_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PORTICO_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = REPO / "tests" / "artifacts"
WAIT_SECONDS = float(os.environ.get("PORTICO_E2E_UI_WAIT", "15"))

# Quiet, offline, reproducible: no sandbox (root in CI containers), no GPU,
# no background traffic to Google, a fresh profile each time.
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--lang=en-US",
]


def require_browser() -> None:
    """Fail (never skip) when the browser is missing: it is part of setup."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: run `scripts/setup browser` first", pytrace=False)


def make_driver(profile_dir: Path, width: int = 1360, height: int = 900) -> WebDriver:
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={width},{height}")
    # Clipboard writes from the copy buttons, without a permission prompt.
    options.add_experimental_option(
        "prefs", {"profile.content_settings.exceptions.clipboard": {"*": {"setting": 1}}}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile_dir.parent / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


def set_color_scheme(driver: WebDriver, scheme: str) -> None:
    """Emulates the system's light/dark preference (`prefers-color-scheme`)."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )


def set_viewport(driver: WebDriver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def clear_viewport(driver: WebDriver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def screenshot(driver: WebDriver, name: str, full_page: bool = True) -> Path:
    """Saves a PNG as tests/artifacts/ui-<name>.png: the whole page, laid out
    as in a window tall enough for it (so sticky parts sit where they
    would), or just the viewport."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    if not full_page:
        path.write_bytes(driver.get_screenshot_as_png())
        return path
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    content = driver.execute_script("return document.documentElement.scrollHeight")
    scroll = driver.execute_script("return window.scrollY")
    try:
        set_viewport(driver, width, max(height, content))
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        clear_viewport(driver)
        driver.execute_script("window.scrollTo(0, arguments[0])", scroll)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def browser_errors(driver: WebDriver) -> list[str]:
    """Console errors and uncaught exceptions since the last call, except the
    failed requests that a test provokes on purpose (they surface as
    'Failed to load resource')."""
    entries = driver.get_log("browser")
    return [
        e["message"]
        for e in entries
        if e.get("level") == "SEVERE" and "Failed to load resource" not in e.get("message", "")
    ]


class Page:
    """Thin waits over a driver, each failing with what was expected."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, hash_path: str = "") -> None:
        """A full page load of `hash_path` (a route like "/plugins")."""
        # Via about:blank: a get() that differs only in the hash (or not at
        # all) would not reload the page. The tab, and so sessionStorage,
        # stays the same.
        self.driver.get("about:blank")
        self.driver.get(f"{self.base_url}/{('#' + hash_path) if hash_path else ''}")

    def go(self, hash_path: str) -> None:
        """In-page navigation, as following a link."""
        self.driver.execute_script("window.location.hash = arguments[0]", hash_path)

    def wait(self, condition, message: str, timeout: float = WAIT_SECONDS):
        def safe(driver):
            try:
                return condition(driver)
            except StaleElementReferenceException:
                return False

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(safe)
        except TimeoutException:
            text = self.driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"timed out waiting for {message}\n--- page text ---\n{text[:3000]}") from None

    def find(self, css: str, timeout: float = WAIT_SECONDS) -> WebElement:
        """The first element matching `css` once it is displayed."""

        def visible(driver):
            for el in driver.find_elements(By.CSS_SELECTOR, css):
                if el.is_displayed():
                    return el
                # Rendered but scrolled out of an overflow container (the
                # model list): bring it into view, as a user would.
                if driver.execute_script("return arguments[0].getClientRects().length > 0", el):
                    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
                    if el.is_displayed():
                        return el
            return False

        return self.wait(visible, f"a visible {css!r}", timeout)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def gone(self, css: str, timeout: float = WAIT_SECONDS) -> None:
        self.wait(
            lambda d: not any(el.is_displayed() for el in d.find_elements(By.CSS_SELECTOR, css)),
            f"{css!r} to disappear",
            timeout,
        )

    def text_in(self, css: str, text: str, timeout: float = WAIT_SECONDS) -> WebElement:
        def has(driver):
            for el in driver.find_elements(By.CSS_SELECTOR, css):
                if el.is_displayed() and text in el.text:
                    return el
            return False

        return self.wait(has, f"{text!r} in {css!r}", timeout)

    def click(self, css: str) -> WebElement:
        el = self.find(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        return el

    def fill(self, css: str, value: str) -> WebElement:
        el = self.find(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.clear()
        el.send_keys(value)
        return el

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)
