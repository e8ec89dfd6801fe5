"""Browser fixtures: Debian's Chromium driven by Playwright, a watch for console errors and CSP violations.

Every page opened through ``new_context`` is watched; a test that leaves a console error, an uncaught
exception or a CSP violation behind fails at teardown, listing them.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from app.users.store import UserStore
from tests.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# Reports CSP violations to Python; init scripts run before the page's own and are not subject to its CSP.
CSP_LISTENER = """
window.__askgateCspCount = 0;
document.addEventListener("securitypolicyviolation", (e) => {
  window.__askgateCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
  window.__askgateCspCount += 1;
});
"""

# How Chromium words a CSP refusal in the console ("Refused to load …"; since about version 140 also
# "Executing inline script violates the following Content Security Policy directive …").
CSP_CONSOLE_SIGNS = ("Refused to", "Content Security Policy")

# Every visible form control must have a label (a <label>, aria-label or aria-labelledby).
UNLABELLED_JS = """
() => [...document.querySelectorAll("input, select, textarea")]
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                  && !el.getAttribute("aria-labelledby"))
  .map((el) => el.outerHTML)
"""

SAMPLE_CODE = {
    "cart.py": '''"""The shopping cart."""


class Cart:
    """A customer's cart: products and how many of each."""

    def __init__(self) -> None:
        self.items: dict[str, int] = {}

    def add(self, sku: str, quantity: int = 1) -> None:
        """Put quantity more of the product sku in the cart."""
        self.items[sku] = self.items.get(sku, 0) + quantity

    def total(self, prices: dict[str, float]) -> float:
        """Sum the price of every product in the cart."""
        return sum(prices[sku] * count for sku, count in self.items.items())
''',
    "coupons.py": '''"""Coupons and discounts."""

PERCENT_OFF = {"WELCOME10": 10, "SPRING25": 25}


def apply_coupon(total: float, code: str) -> float:
    """Apply a coupon code to a cart total; unknown codes change nothing."""
    percent = PERCENT_OFF.get(code.upper(), 0)
    return round(total * (100 - percent) / 100, 2)
''',
    "session.py": '''"""Sessions of signed-in shoppers."""

import secrets

COOKIE_NAME = "shop_session"


def new_session_id() -> str:
    """A random, unguessable session id."""
    return secrets.token_urlsafe(32)


def save_session_cookie(response, session_id: str) -> None:
    """Save the session id in an HttpOnly, SameSite cookie on the response."""
    response.set_cookie(COOKIE_NAME, session_id, httponly=True, samesite="Lax", secure=True)
''',
}


@dataclass
class BrowserWatch:
    """Console errors, uncaught exceptions and CSP violations seen by any watched page."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect a console error matching ``pattern`` (e.g. the 429 a throttling test provokes)."""
        self.allowed.append(re.compile(pattern))

    def _add(self, problem: str) -> None:
        if not any(p.search(problem) for p in self.allowed):
            self.problems.append(problem)

    def attach(self, page) -> None:
        def on_console(msg) -> None:
            if msg.type == "error" or any(sign in msg.text for sign in CSP_CONSOLE_SIGNS):
                self._add(f"console {msg.type} on {page.url}: {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self._add(f"uncaught exception on {page.url}: {exc}"))


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the browser tests")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    # Others may share the machine's two cores; a generous wait is still a wait on an event, not a sleep.
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def watch() -> BrowserWatch:
    return BrowserWatch()


@pytest.fixture
def new_context(browser, watch: BrowserWatch):
    """``new_context(server)``: a fresh browser profile on the server, every page in it watched."""
    contexts = []

    def make(server, **options):
        context = browser.new_context(base_url=server.url, viewport=DESKTOP, **options)
        context.set_default_timeout(10_000)
        context.expose_function("__askgateCsp", lambda text: watch._add(f"CSP violation: {text}"))
        context.expose_function("__askgateFlush", lambda: None)
        context.add_init_script(CSP_LISTENER)
        context.on("page", watch.attach)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        for page in context.pages:
            flush(page)
        context.close()
    assert watch.problems == [], "the browser reported problems:\n" + "\n".join(watch.problems)


def flush(page) -> None:
    """Wait until the CSP reports a page has sent so far have reached the watch (bindings run in order)."""
    with contextlib.suppress(PlaywrightError):  # a page that is closing has nothing more to say
        page.evaluate("() => window.__askgateFlush()")


def unlabelled_inputs(page) -> list[str]:
    return page.evaluate(UNLABELLED_JS)


def shoot(page, name: str) -> None:
    """Full-page screenshots at desktop and phone size; on the phone the page must not scroll sideways.

    Also checks what every page must satisfy: each input has a label.
    """
    SCREENSHOTS.mkdir(exist_ok=True)
    assert unlabelled_inputs(page) == [], f"inputs without a label on {page.url}"
    page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    try:
        overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow == 0, f"{page.url} scrolls sideways by {overflow}px on a 390px phone"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    finally:
        page.set_viewport_size(DESKTOP)


def add_user(workspaces: Path, name: str = "admin", admin: bool = True, password: str = PASSWORD) -> None:
    """Create a user in the store before the server starts (the fresh-instance flow uses /setup instead)."""
    UserStore(workspaces).create(name, password, "admin" if admin else "member")


def add_workspace(workspaces: Path, workspace_id: str = "shop") -> Path:
    folder = workspaces / workspace_id
    folder.mkdir()
    for name, text in SAMPLE_CODE.items():
        (folder / name).write_text(text)
    return folder


def sign_in(page, username: str = "admin", password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboard")
