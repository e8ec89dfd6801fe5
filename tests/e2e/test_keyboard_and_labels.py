"""Flow 8: sign-in and key generation work from the keyboard alone, and every input has a label."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import add_user, add_workspace, shoot, sign_in, unlabelled_inputs

pytestmark = [pytest.mark.e2e, pytest.mark.server]


def focused(page) -> str:
    return page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()")


def tab_to(page, target: str, limit: int = 40) -> None:
    """Press Tab until the element with id or text ``target`` has the focus."""
    for _ in range(limit):
        if focused(page) == target:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{target!r} is not reachable with Tab (stuck at {focused(page)!r})")


def test_sign_in_and_key_generation_by_keyboard(live_server, workspaces, new_context):
    add_user(workspaces)
    server = live_server()
    page = new_context(server, permissions=["clipboard-read", "clipboard-write"]).new_page()

    page.goto("/login")
    assert focused(page) == "username"  # autofocus: typing starts right away
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    assert focused(page) == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard")

    # The first Tab offers a way past the navigation.
    page.keyboard.press("Tab")
    assert focused(page) == "Skip to content"
    tab_to(page, "Account Security")
    page.keyboard.press("Enter")
    page.wait_for_url("**/account/security")

    tab_to(page, "name")
    page.keyboard.type("keyboard-key")
    page.keyboard.press("Tab")
    assert focused(page) == "expiry"
    # Then the limits, in reading order (no workspaces yet: nothing to choose there), then the button.
    stops = []
    for _ in range(6):
        page.keyboard.press("Tab")
        stops.append(focused(page))
    assert stops == ["scopes-0", "scopes-1", "scopes-2", "rate_limit", "allowed_ips", "Generate key"]
    page.keyboard.press("Enter")

    key_box = page.get_by_label("New API key")
    expect(key_box).to_be_focused()  # the new key takes the focus, so it is announced and selectable
    key = key_box.input_value()
    page.keyboard.press("Tab")
    assert focused(page) == "Copy"
    page.keyboard.press("Enter")
    expect(page.locator(".copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    shoot(page, "8-keyboard-new-key")


def test_every_input_on_every_page_has_a_label(live_server, workspaces, new_context):
    add_user(workspaces)
    add_workspace(workspaces)
    server = live_server()
    page = new_context(server).new_page()

    page.goto("/login")
    assert unlabelled_inputs(page) == []
    # The check itself works: an input without a label is reported.
    page.evaluate("() => document.querySelector('form').append(document.createElement('input'))")
    assert unlabelled_inputs(page) == ["<input>"]

    sign_in(page)
    for path in ("/dashboard", "/ask", "/account/security", "/admin/users"):
        page.goto(path)
        assert unlabelled_inputs(page) == [], path
        assert page.locator("input:not([type=hidden]), select, textarea").count() > 0, path
    page.goto("/account/security")
    page.get_by_label("Key name").fill("labelled")
    page.get_by_role("button", name="Generate key").click()
    expect(page.get_by_label("New API key")).to_be_visible()
    assert unlabelled_inputs(page) == []
    shoot(page, "8-labels")
