"""Flow 6: a wrong password, a stale form and login throttling each explain themselves in the site layout."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import add_user, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]

FORM_EXPIRED = "This form has expired or was opened in another session. Go back, reload the page and try again."


def expect_site_layout(page) -> None:
    expect(page.locator("header.topbar .brand")).to_have_text("Askgate")
    expect(page.locator("footer.footer")).to_be_visible()
    expect(page.locator("link[rel=stylesheet]")).to_have_attribute("href", "/static/app.css")


def test_stale_forms_and_throttled_logins_show_readable_pages(live_server, workspaces, new_context, watch):
    add_user(workspaces)
    server = live_server(LOGIN_RATE_LIMIT="3/minute")
    # The browser logs the error statuses this test provokes on purpose; nothing else may appear.
    watch.allow(r"Failed to load resource: the server responded with a status of (400|429) ")
    context = new_context(server)
    page = context.new_page()
    sign_in(page)

    # A form whose CSRF token no longer matches (tampered, or from before the session changed).
    page.get_by_role("link", name="Account Security").click()
    page.locator("form.key-form input[name=csrf_token]").evaluate("(input) => { input.value = 'stale-token'; }")
    page.get_by_label("Key name").fill("never-made")
    page.get_by_role("button", name="Generate key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Form expired")
    expect(page.locator("main")).to_contain_text(FORM_EXPIRED)
    expect(page.locator(".status-code")).to_have_text("400")
    expect_site_layout(page)
    shoot(page, "6-form-expired")

    # A page left open while the session ended (cookies gone): the same readable refusal.
    page.go_back()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account Security")
    context.clear_cookies()
    page.get_by_label("Key name").fill("never-made")
    page.get_by_role("button", name="Generate key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Form expired")
    expect(page.locator("main")).to_contain_text(FORM_EXPIRED)

    # Wrong passwords: a message on the sign-in page, then throttling after three failures.
    page.goto("/login")
    for _ in range(3):
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password, or the account is disabled.")
        expect(page.get_by_label("Username")).to_have_value("admin")
        expect(page.get_by_label("Password")).to_have_value("")
    expect_site_layout(page)
    shoot(page, "6-wrong-password")

    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".status-code")).to_have_text("429")
    expect(page.locator("main")).to_contain_text("Too many attempts. Wait a minute, then try again.")
    expect_site_layout(page)
    assert "Traceback" not in page.content()
    shoot(page, "6-throttled")
