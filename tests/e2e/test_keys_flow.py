"""Flows 2 and 3: a key is generated on Account Security, shown once, copied, used, and revoked."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import add_user, add_workspace, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]

KEY_RE = re.compile(r"^agk_[0-9A-Za-z]{40,}$")


def generate_key(page, name: str, expiry: str = "never") -> str:
    page.get_by_role("link", name="Account Security").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account Security")
    page.get_by_label("Key name").fill(name)
    page.get_by_label("Expires").select_option(expiry)
    page.get_by_role("button", name="Generate key").click()
    key_box = page.get_by_label("New API key")
    expect(key_box).to_have_value(KEY_RE)
    return key_box.input_value()


def key_row(page, name: str):
    return page.locator("table.keys tbody tr").filter(has=page.get_by_role("cell", name=name, exact=True))


def test_new_key_is_shown_once_and_copied(live_server, workspaces, new_context):
    add_user(workspaces)
    server = live_server()
    context = new_context(server, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_in(page)

    page.get_by_role("link", name="Account Security").click()
    own_keys = page.locator("section", has=page.get_by_role("heading", name="Your keys"))
    expect(own_keys.locator(".empty")).to_have_text("No keys yet. Generate one above, then call the API with it.")
    shoot(page, "2-account-security-empty")

    key = generate_key(page, "ci-pipeline", expiry="90")
    expect(page.locator("[data-new-key]")).to_contain_text("Copy it now: you won't see it again.")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("() => navigator.clipboard.readText()") == key

    row = key_row(page, "ci-pipeline")
    expect(row).to_have_count(1)
    expect(row.locator("td[data-label=Key]")).to_have_text(key[:12] + "…")
    expect(row.locator(".badge")).to_have_text("active")
    expect(row.locator("td[data-label=Expires] time")).to_have_count(1)
    shoot(page, "2-new-key")

    # Once shown, never again: not after a reload, not after going elsewhere and back.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account Security")
    expect(page.get_by_label("New API key")).to_have_count(0)
    assert key not in page.content()
    expect(key_row(page, "ci-pipeline").locator(".badge")).to_have_text("active")

    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator(".card-keys")).to_contain_text("1 active")
    page.go_back()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account Security")
    assert key not in page.content()
    shoot(page, "2-after-reload")


def test_key_works_until_revoked_in_the_page(live_server, workspaces, new_context):
    add_user(workspaces)
    add_workspace(workspaces)
    server = live_server()
    page = new_context(server).new_page()
    sign_in(page)
    key = generate_key(page, "deploy-bot")
    prefix = key[:12]

    whoami = requests.get(f"{server.url}/api/whoami", headers={"x-api-key": key}, timeout=10)
    assert whoami.status_code == 200
    assert whoami.json()["auth_method"] == "dashboard_key"
    assert whoami.json()["user"] == "admin"
    assert whoami.json()["key"]["name"] == "deploy-bot"
    assert whoami.json()["key"]["prefix"] == prefix
    question = {"workspaceId": "shop", "question": "How is the session cookie saved on the response?"}
    bearer = {"Authorization": f"Bearer {key}"}
    answer = requests.post(f"{server.url}/api/ask", json=question, headers=bearer, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["sources"][0]["path"] == "session.py"

    page.reload()
    dialogs: list[str] = []

    # Dismissing the confirmation keeps the key.
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Revoke key deploy-bot").click()
    expect(key_row(page, "deploy-bot").locator(".badge")).to_have_text("active")
    assert requests.get(f"{server.url}/api/whoami", headers={"x-api-key": key}, timeout=10).status_code == 200

    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Revoke key deploy-bot").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Key “deploy-bot” ({prefix}…) is revoked. Requests with it now get 401."
    )
    expect(key_row(page, "deploy-bot").locator(".badge")).to_have_text("revoked")
    expect(page.get_by_role("button", name="Revoke key deploy-bot")).to_have_count(0)
    confirm = f"Revoke key “deploy-bot” ({prefix}…)? Scripts using it will get 401 at once."
    assert dialogs == [confirm, confirm]
    shoot(page, "3-revoked")

    refused = requests.get(f"{server.url}/api/whoami", headers={"x-api-key": key}, timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"error": "Invalid API key"}
    refused = requests.post(f"{server.url}/api/ask", json=question, headers=bearer, timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"error": "Invalid API key"}
