"""Flow: an uploaded workspace is indexed in the background; the dashboard follows it without reloading.

The server runs with the test gate (``ASKGATE_TEST_INDEX_GATE``): its index job pauses after the first file
until the gate file exists, so the half-built state is on screen for as long as the test looks at it.
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from playwright.sync_api import expect

from app.ask.indexjobs import TEST_GATE_ENV
from tests.e2e.conftest import SAMPLE_CODE, add_user, add_workspace, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]

DARK_PRIMARY = "rgb(125, 155, 255)"  # --primary in app.css's dark scheme


def sample_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in SAMPLE_CODE.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def test_upload_shows_the_index_progress_then_ready_without_a_reload(
    live_server, workspaces, new_context, tmp_path, watch
):
    gate = tmp_path / "gate"
    add_user(workspaces)
    server = live_server(ASK_INDEX_WAIT="0", **{TEST_GATE_ENV: str(gate)})
    context = new_context(server, color_scheme="dark")
    page = context.new_page()
    sign_in(page)

    page.get_by_label("Workspace id").fill("shop")
    page.get_by_label("Archive (.zip or .tar.gz)").set_input_files(
        {"name": "shop.zip", "mimeType": "application/zip", "buffer": sample_zip()}
    )
    page.get_by_role("button", name="Upload workspace").click()
    page.wait_for_url("**/dashboard")
    expect(page.locator(".flash-success")).to_contain_text("Workspace shop is uploaded: 3 files.")
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if anything reloads the page

    row = page.locator('.ws-index[data-workspace="shop"]')
    bar = page.get_by_role("progressbar", name="Index progress of shop")
    expect(row.locator(".ws-index-text")).to_have_text("Indexing 1 of 3 files")
    expect(bar).to_be_visible()
    expect(bar).to_have_js_property("value", 1)
    expect(bar).to_have_js_property("max", 3)
    assert bar.evaluate("(el) => getComputedStyle(el).accentColor") == DARK_PRIMARY
    expect(row.get_by_role("button")).to_be_hidden()  # nothing to retry while it runs
    shoot(page, "9-index-progress")  # labels, and no sideways scrolling on a phone

    # Asking meanwhile (another tab, the Ask page) says why there is no answer yet and when to come back.
    watch.allow(r"status of 503")
    ask = context.new_page()
    ask.goto("/ask?workspace=shop")
    ask.get_by_label("Question").fill("Where is the coupon applied?")
    ask.get_by_role("button", name="Ask").click()
    expect(ask.locator(".ask-status")).to_have_text(
        re.compile(
            r"^Workspace is being indexed\. Ask again in [1-9][0-9]? seconds \(the dashboard shows its progress\)\.$"
        )
    )
    ask.close()

    gate.touch()
    expect(row.locator(".ws-index-text")).to_have_text(re.compile(r"^Ready · indexed \d{4}-\d\d-\d\d$"))
    expect(bar).to_be_hidden()
    expect(page.locator("#index-announcer")).to_have_text(re.compile(r"^Workspace shop: Ready · indexed "))
    assert page.evaluate("() => window.__sameDocument") is True
    shoot(page, "9-index-ready")


def test_a_workspace_copied_in_by_hand_can_be_indexed_from_the_dashboard(live_server, workspaces, new_context):
    add_user(workspaces)
    add_workspace(workspaces, "copied")
    server = live_server()
    page = new_context(server).new_page()
    sign_in(page)
    row = page.locator('.ws-index[data-workspace="copied"]')
    expect(row.locator(".ws-index-text")).to_have_text("Not indexed yet")
    expect(page.get_by_role("progressbar", name="Index progress of copied")).to_be_hidden()
    page.get_by_role("button", name="Index workspace copied now").click()
    expect(page.locator(".flash-success")).to_have_text("Indexing copied has started.")
    expect(row.locator(".ws-index-text")).to_have_text(re.compile(r"^Ready · indexed "))
    expect(row.get_by_role("button")).to_be_hidden()
