"""Flow 7: no page logs a console error or trips the Content Security Policy.

The ``new_context`` fixture watches every page of every e2e test; this test walks all pages at once and
first proves the watch would notice.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import add_user, add_workspace, flush, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]

PAGES = {
    "/dashboard": "Welcome, admin",
    "/ask": "Ask about your code",
    "/account/security": "Account Security",
    "/admin/users": "Users",
    "/no-such-page": "Not Found",
}


def test_no_console_errors_or_csp_violations_anywhere(live_server, workspaces, new_context, watch):
    add_user(workspaces)
    add_workspace(workspaces)
    server = live_server()
    page = new_context(server).new_page()

    # The watch notices an inline script, an inline style and a failing script, so silence below means something.
    page.goto("/login")
    with (
        page.expect_console_message(lambda msg: "inline script" in msg.text and "Content Security Policy" in msg.text),
        page.expect_event("pageerror"),
    ):
        page.evaluate("""() => {
            const s = document.createElement("script"); s.textContent = "window.inlineRan = true;";
            document.body.append(s);
            const d = document.createElement("div"); d.setAttribute("style", "color: red"); document.body.append(d);
            setTimeout(() => { throw new Error("planted"); });
        }""")
    page.wait_for_function("() => window.__askgateCspCount >= 2")
    flush(page)
    assert page.evaluate("() => window.inlineRan") is None
    seen = list(watch.problems)
    assert any(p.startswith("console error") and "inline script" in p for p in seen), seen
    assert any(p.startswith("CSP violation: script-src-elem blocked inline") for p in seen), seen
    assert any(p.startswith("CSP violation: style-src-attr blocked inline") for p in seen), seen
    assert any("uncaught exception" in p and "planted" in p for p in seen), seen
    watch.problems.clear()

    # The one page that is an error on purpose: Chromium logs its status, which is no fault of the page.
    watch.allow(r"/no-such-page: Failed to load resource: the server responded with a status of 404 ")
    sign_in(page)
    for path, heading in PAGES.items():
        response = page.goto(path)
        assert response.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        flush(page)
        assert watch.problems == [], f"{path}: {watch.problems}"
    page.get_by_text("admin", exact=True).first.click()  # the user menu in the top bar
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    shoot(page, "7-signed-out")
    assert watch.problems == []
