"""Flow 1: a fresh instance is claimed through the one-time setup URL."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import shoot

pytestmark = pytest.mark.e2e


def test_fresh_instance_setup_creates_first_admin(live_server, workspaces, new_context):
    server = live_server()
    token = (workspaces / ".setup-token").read_text().strip()
    assert f"/setup?token={token}" in server.log()
    page = new_context(server).new_page()

    # Without the token the instance cannot be claimed; the page says where the token is.
    page.goto("/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Askgate has no users yet")
    shoot(page, "1-no-users")

    page.goto(f"/setup?token={token}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Create the first admin")
    page.get_by_label("Admin username").fill("ada")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    shoot(page, "1-setup")
    page.get_by_role("button", name="Create admin and sign in").click()

    page.wait_for_url("**/dashboard")
    expect(page.get_by_role("status")).to_have_text("Welcome, ada. You are the first admin of this Askgate.")
    expect(page.locator(".usermenu")).to_contain_text("ada")
    shoot(page, "1-dashboard")

    # The token is spent: the file is gone and the setup page no longer exists.
    assert not (workspaces / ".setup-token").exists()
    assert requests.get(f"{server.url}/setup?token={token}", timeout=5).status_code == 404
