"""Flow 3b: a key limited on Account Security (scopes, one workspace, its own hourly limit, allowed addresses) is
rotated with a grace; its row shows the limits and the grace, at desktop and phone size, light and dark."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import PHONE, add_user, add_workspace, shoot, sign_in
from tests.e2e.test_keys_flow import KEY_RE

pytestmark = [pytest.mark.e2e, pytest.mark.server]

GRACE_RE = re.compile(r"^previous secret valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC$")


def whoami(server, key: str) -> requests.Response:
    return requests.get(f"{server.url}/api/whoami", headers={"x-api-key": key}, timeout=10)


def key_row(page, name: str):
    """The key's row, by its name cell's class: at phone size the cells are blocks and lose their table role."""
    return page.locator("table.keys tbody tr", has=page.locator("td.cell-name", has_text=re.compile(f"^{name}$")))


def limits_of(row) -> dict[str, str]:
    """The row's limits as shown: {"Scopes": "ask", "Workspaces": "shop", ...}."""
    terms = row.locator(".key-limits dt").all_inner_texts()
    values = row.locator(".key-limits dd").all_inner_texts()
    return {term.rstrip(":"): value for term, value in zip(terms, values, strict=True)}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_limited_key_is_created_rotated_and_its_row_shows_the_limits(live_server, workspaces, new_context, scheme):
    add_user(workspaces)
    add_workspace(workspaces, "shop")
    add_workspace(workspaces, "other")
    server = live_server()
    page = new_context(server, color_scheme=scheme).new_page()
    sign_in(page)
    page.get_by_role("link", name="Account Security").click()

    # A bad address is a readable message that creates nothing.
    page.get_by_label("Key name").fill("ci-shop")
    page.get_by_label("Allowed addresses").fill("10.0.0.300")
    page.get_by_role("button", name="Generate key").click()
    expect(page.locator("#allowed_ips-err")).to_have_text(
        "allowed_ips: '10.0.0.300' is not an IP address or CIDR range (examples: 203.0.113.7, 10.0.0.0/8, "
        "2001:db8::/32)"
    )
    expect(page.get_by_label("New API key")).to_have_count(0)
    expect(page.get_by_label("Key name")).to_have_value("ci-shop")  # what was typed stays
    shoot(page, f"3b-limits-error-{scheme}")

    # Only ask, only the shop workspace (ticking it chooses "Only these"), 3 an hour, loopback and 10/8.
    page.get_by_label("List workspaces").uncheck()
    page.get_by_label("shop", exact=True).check()
    expect(page.get_by_label("Only these:")).to_be_checked()
    page.get_by_label("Requests per hour").fill("3")
    page.get_by_label("Allowed addresses").fill("127.0.0.1\n10.0.0.0/8")
    page.get_by_role("button", name="Generate key").click()
    key_box = page.get_by_label("New API key")
    expect(key_box).to_have_value(KEY_RE)
    old_key = key_box.input_value()

    row = key_row(page, "ci-shop")
    expected = {
        "Scopes": "ask",
        "Workspaces": "shop",
        "Rate limit": "3/hour",
        "Allowed IPs": "127.0.0.1/32 10.0.0.0/8",
    }
    assert limits_of(row) == expected
    expect(row.locator(".grace")).to_have_count(0)
    shoot(page, f"3b-limited-key-{scheme}")

    # The session's own view of the API says the same.
    api_limits = {
        "scopes": ["ask"],
        "workspaces": ["shop"],
        "rate_limit": 3,
        "allowed_ips": ["127.0.0.1/32", "10.0.0.0/8"],
    }
    listed = page.request.get("/api/keys").json()["keys"]
    assert [{name: k[name] for name in ("name", *api_limits)} for k in listed] == [{"name": "ci-shop", **api_limits}]
    key_id = listed[0]["id"]

    # Rotate with a grace of one hour: the new secret is shown once, the row says until when the old one works.
    rotate = row.locator("details.rotate")
    expect(rotate.get_by_label("Keep the old secret working for")).to_be_hidden()
    rotate.locator("summary").click()  # "Rotate…" opens the grace choice
    expect(rotate.get_by_label("Keep the old secret working for")).to_have_value("86400")  # 1 day unless chosen
    rotate.get_by_label("Keep the old secret working for").select_option(label="1 hour")
    shoot(page, f"3b-rotate-open-{scheme}")
    rotate.get_by_role("button", name="Rotate key ci-shop now").click()
    expect(page.get_by_role("heading", name="New secret for “ci-shop”")).to_be_visible()
    new_key = page.get_by_label("New API key").input_value()
    assert KEY_RE.match(new_key) and new_key != old_key
    expect(page.locator(".rotated-note")).to_contain_text("The previous secret keeps working until")

    row = key_row(page, "ci-shop")
    expect(row).to_have_count(1)
    expect(row.locator("td[data-label=Key] code")).to_have_text(new_key[:12] + "…")
    expect(row.locator(".grace")).to_have_text(GRACE_RE)
    assert limits_of(row) == expected
    shoot(page, f"3b-rotated-{scheme}")
    # At desktop size the key table fits: Rotate… and Revoke need no sideways scrolling.
    assert page.evaluate(
        "() => [...document.querySelectorAll('.table-wrap')].map(w => w.scrollWidth - w.clientWidth)"
    ) == [0]

    # At phone size the row still reads: every limit and the grace line visible, nothing cut off.
    page.set_viewport_size(PHONE)
    for term in expected:
        expect(row.locator(".key-limits dt", has_text=term)).to_be_visible()
    expect(row.locator(".grace")).to_be_visible()
    expect(row.locator("details.rotate summary")).to_be_visible()

    # Both secrets work during the grace, as the same key, within the key's limits: its own 3 requests an hour
    # (refusals do not count), only its workspace, only asking.
    for key in (new_key, old_key):
        answer = whoami(server, key)
        assert answer.status_code == 200
        assert answer.json()["key"]["id"] == key_id
        assert {name: answer.json()["key"][name] for name in api_limits} == api_limits
        assert answer.headers["X-RateLimit-Limit"] == "3"
    question = {"workspaceId": "shop", "question": "How is the session cookie saved on the response?"}
    answer = requests.post(f"{server.url}/api/ask", json=question, headers={"x-api-key": new_key}, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["sources"][0]["path"] == "session.py"
    refused = requests.post(
        f"{server.url}/api/ask", json={**question, "workspaceId": "other"}, headers={"x-api-key": new_key}, timeout=10
    )
    assert (refused.status_code, refused.json()) == (403, {"error": "This key cannot access workspace other"})
    refused = requests.get(f"{server.url}/api/workspaces", headers={"x-api-key": old_key}, timeout=10)
    assert (refused.status_code, refused.json()) == (403, {"error": "This key lacks the workspaces:read scope"})
    assert whoami(server, new_key).status_code == 429  # the fourth counted request this hour

    # Shown once: not after a reload.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account Security")
    expect(page.get_by_label("New API key")).to_have_count(0)
    assert new_key not in page.content() and old_key not in page.content()
    expect(key_row(page, "ci-shop").locator(".grace")).to_have_text(GRACE_RE)
