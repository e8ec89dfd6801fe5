"""Flow 5: an admin adds a user and disables them; the user's session and keys stop working at once."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import add_user, shoot, sign_in
from tests.e2e.test_keys_flow import generate_key

pytestmark = [pytest.mark.e2e, pytest.mark.server]


def test_disabling_a_user_ends_their_session_and_keys(live_server, workspaces, new_context):
    add_user(workspaces)
    server = live_server()
    admin = new_context(server).new_page()
    sign_in(admin)

    admin.get_by_role("link", name="Users").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Users")
    admin.get_by_label("Username").fill("bob")
    admin.get_by_label("Initial password").fill(PASSWORD)
    admin.get_by_role("button", name="Add user").click()
    expect(admin.get_by_role("status")).to_have_text("User bob added. Give them their initial password privately.")
    bob_row = admin.locator("table.users tbody tr").filter(has=admin.get_by_role("cell", name="bob", exact=True))
    expect(bob_row.locator("td[data-label=Role]")).to_have_text("member")
    expect(bob_row.locator(".badge")).to_have_text("active")
    shoot(admin, "5-user-added")

    # Bob signs in elsewhere and makes a key.
    bob = new_context(server).new_page()
    sign_in(bob, "bob")
    expect(bob.get_by_role("link", name="Users")).to_have_count(0)
    key = generate_key(bob, "bobs-script")
    assert requests.get(f"{server.url}/api/whoami", headers={"x-api-key": key}, timeout=10).json()["user"] == "bob"
    assert bob.request.get("/api/whoami").json()["auth_method"] == "session"

    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Disable bob").click()
    expect(admin.get_by_role("status")).to_have_text("bob is disabled: signed out everywhere, 1 key(s) revoked.")
    expect(bob_row.locator(".badge")).to_have_text("disabled")
    expect(admin.get_by_role("button", name="Enable bob")).to_be_visible()
    shoot(admin, "5-user-disabled")

    # Bob's open session is over: pages send him to sign in, the session API refuses him.
    bob.get_by_role("link", name="Dashboard").click()
    bob.wait_for_url("**/login?next=%2Fdashboard")
    expect(bob.get_by_role("status")).to_have_text("Sign in to see that page.")
    session_call = bob.request.get("/api/whoami")
    assert session_call.status == 401
    assert session_call.json() == {"error": "API key required"}
    refused = requests.get(f"{server.url}/api/whoami", headers={"x-api-key": key}, timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"error": "Invalid API key"}

    # And he cannot sign in again.
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill(PASSWORD)
    bob.get_by_role("button", name="Sign in").click()
    expect(bob.get_by_role("alert")).to_have_text("Wrong username or password, or the account is disabled.")
    shoot(bob, "5-disabled-user-sign-in")
