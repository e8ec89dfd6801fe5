"""Flow 6: an admin reads the audit log at /admin/audit: the table, a filter and the next page, desktop and phone,
light and dark."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import PHONE, add_user, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]


def _admin(server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers={"x-api-key": ADMIN_KEY}, timeout=10, **kwargs)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_audit_page_shows_filters_and_pages_the_events(live_server, workspaces, new_context, scheme):
    add_user(workspaces)
    add_user(workspaces, "bob", admin=False)
    server = live_server()
    ids = [_admin(server, "POST", "/api/keys", json={"name": f"ci-{n}", "user": "bob"}).json()["id"] for n in range(3)]
    assert _admin(server, "PATCH", f"/api/keys/{ids[0]}", json={"active": False}).status_code == 200
    page = new_context(server, color_scheme=scheme).new_page()
    sign_in(page)
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")

    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(5)  # the sign-in, the revoke, three keys: newest first
    actions = rows.locator("td[data-label=Action]").all_inner_texts()
    assert actions == ["user.login", "key.revoke", "key.create", "key.create", "key.create"]
    first = rows.nth(0)
    expect(first.locator("td[data-label=Actor]")).to_have_text("admin")
    expect(first.locator("td[data-label=Address]")).to_have_text("127.0.0.1")
    expect(rows.nth(1).locator("td[data-label=Actor]")).to_have_text("admin key")
    expect(rows.nth(1).locator("td[data-label=Target]")).to_contain_text("ci-0")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert (sum(channels) < 150) == (scheme == "dark"), background
    shoot(page, f"6-audit-log-{scheme}")

    # A filter and a page of two: the next page continues with the same filter.
    page.get_by_label("Action").select_option("key.create")
    page.get_by_label("Per page (up to 500)").fill("2")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(2)
    expect(rows.locator("td[data-label=Target]").nth(0)).to_contain_text("ci-2")
    page.get_by_role("link", name="Older events").click()
    expect(rows).to_have_count(1)
    expect(rows.locator("td[data-label=Target]")).to_contain_text("ci-0")
    expect(page.get_by_role("link", name="Older events")).to_have_count(0)
    expect(page.get_by_label("Action")).to_have_value("key.create")

    # On a phone each event is a card: every cell readable without scrolling sideways.
    page.get_by_role("link", name="Clear").click()
    page.set_viewport_size(PHONE)
    expect(rows).to_have_count(5)
    width = page.evaluate("() => document.documentElement.clientWidth")
    box = rows.nth(0).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    expect(rows.nth(0).locator("td[data-label=Action]")).to_be_visible()
