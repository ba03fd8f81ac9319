"""A headless Chromium driven by selenium, and the console's pages as a test sees them.

Debian's ``/usr/bin/chromium`` through its ``/usr/bin/chromedriver``; ``SE_OFFLINE=1`` keeps
selenium manager from downloading a browser or a driver. Every wait is an explicit
:class:`WebDriverWait` with a bound (the e2e machine is small and shared).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from eventray.serving.console.auth import COOKIE_NAME

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: seconds a page or an htmx swap may take on the shared two-core machine
PAGE_S = 60.0
#: screens reachable from the nav bar: key -> heading
SCREENS = {"events": "Events", "projections": "Projections", "sagas": "Sagas", "live": "Live",
           "models": "Models", "cluster": "Cluster"}

# Installed before any page script runs (CDP, so the page's CSP does not apply to it): keeps
# every securitypolicyviolation the document reports, for csp_violations().
_CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                              " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def available() -> str | None:
    """Why no browser test can run here, or ``None`` when Chromium and its driver are installed."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    return f"not installed: {', '.join(missing)} (apt-get install chromium chromium-driver)" if missing else None


def chromium() -> webdriver.Chrome:
    """A headless Chromium (1400x1000) that keeps its console log for :meth:`ConsolePage.browser_log`;
    fails (never skips) where ``make deps`` has not installed it."""
    missing = available()
    if missing is not None:
        raise RuntimeError(f"the console's browser tests need Debian's Chromium: {missing}, or run `make deps`")
    os.environ["SE_OFFLINE"] = "1"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_S * 2)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _CSP_RECORDER})
    return driver


class ConsolePage:
    """One browser on the console at ``base`` (``http://host:port/<prefix>``).

    Args:
        driver: the browser.
        base: the app's URL without ``/graphql``; the console is ``{base}/console``.
    """

    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver = driver
        self.url = f"{base}/console"

    # --- waiting ---

    def wait(self, condition: Callable[[Any], Any], timeout: float = PAGE_S, message: str = "",
             poll: float = 0.25) -> Any:
        """``condition(driver)`` once it is truthy (stale elements count as not yet)."""
        return WebDriverWait(self.driver, timeout, poll_frequency=poll,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)

    def visible(self, css: str, timeout: float = PAGE_S) -> WebElement:
        return self.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout,
                         f"{css} not visible on {self.driver.current_url}")

    def present(self, css: str, timeout: float = PAGE_S) -> WebElement:
        return self.wait(ec.presence_of_element_located((By.CSS_SELECTOR, css)), timeout,
                         f"{css} not on {self.driver.current_url}")

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def htmx_idle(self, timeout: float = PAGE_S) -> None:
        """No htmx request in flight (htmx marks the element of each with ``htmx-request``)."""
        self.wait(lambda d: d.execute_script(
            "return !!window.htmx && document.querySelectorAll('.htmx-request').length === 0"), timeout,
            "htmx still busy")

    # --- session ---

    def session_cookie(self) -> dict[str, Any] | None:
        return self.driver.get_cookie(COOKIE_NAME)

    def login(self, token: str) -> None:
        """Open the login page, paste ``token`` and submit it; waits for the next page."""
        self.driver.get(f"{self.url}/login")
        self.submit_token(token)

    def submit_token(self, token: str) -> None:
        """Paste ``token`` into the login form on the page and submit it."""
        field = self.visible("#token")
        field.clear()
        field.send_keys(token)
        button = self.driver.find_element(By.ID, "login")
        button.click()
        self.wait(ec.staleness_of(button), message="the login form was not submitted")
        self.present("body")

    def on_login_page(self) -> bool:
        return self.driver.current_url.split("?")[0].endswith("/console/login")

    # --- screens ---

    def nav(self, key: str) -> None:
        """Click the nav bar's link to screen ``key`` and wait for that screen to be the one shown."""
        link = self.visible(f"#nav-{key}")
        link.click()
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, f"#nav-{key}").get_attribute("aria-current") == "page",
                  message=f"the {key} screen did not open (at {self.driver.current_url})")
        self.wait(lambda d: d.find_element(By.TAG_NAME, "h1").text == SCREENS[key],
                  message=f"the {key} screen has no heading {SCREENS[key]!r}")

    def csp_violations(self) -> list[str]:
        """The CSP violations the page reported (its own event and the browser log's lines)."""
        seen = list(self.driver.execute_script("return window.__cspViolations || []") or [])
        return seen + [e["message"] for e in self.browser_log() if "Content Security Policy" in e.get("message", "")]

    def browser_log(self) -> list[dict[str, Any]]:
        """The browser console's entries since the last call (empty where the driver keeps none)."""
        try:
            return list(self.driver.get_log("browser"))
        except WebDriverException:
            return []
