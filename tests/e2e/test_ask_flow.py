"""Flow 4: a question on the Ask page gets an answer and its sources, highlighted by Pygments."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import add_user, add_workspace, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]


def test_ask_shows_answer_and_highlighted_sources(live_server, workspaces, new_context):
    add_user(workspaces)
    server = live_server()
    page = new_context(server).new_page()
    sign_in(page)

    page.get_by_role("link", name="Ask", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ask about your code")
    expect(page.locator(".empty")).to_contain_text("There are no workspaces to ask about yet.")
    shoot(page, "4-ask-empty")

    add_workspace(workspaces)
    page.reload()
    expect(page.get_by_label("Workspace")).to_have_value("shop")
    page.get_by_label("Question").fill("How is the session cookie saved on the response?")
    page.get_by_role("button", name="Ask").click()

    answer = page.locator("#ask-result .answer-text")
    expect(answer).to_contain_text("The most relevant code is save_session_cookie in session.py (lines")
    expect(answer.locator("code").first).to_have_text("save_session_cookie")  # `name` in the answer is code
    expect(answer).to_contain_text("Save the session id in an HttpOnly, SameSite cookie on the response.")
    first = page.locator("#ask-result .source").first
    expect(first.locator(".source-path")).to_have_text("session.py")
    expect(first.locator(".source-symbol")).to_have_text("save_session_cookie")
    # Pygments spans: the function name, a keyword and the docstring are classed, not inline-styled.
    expect(first.locator(".highlight span.nf", has_text="save_session_cookie")).to_have_count(1)
    expect(first.locator(".highlight span.k", has_text="def")).to_have_count(1)
    expect(first.locator(".highlight span.sd").first).to_contain_text("Save the session id")
    expect(page.locator("#ask-result [style]")).to_have_count(0)
    expect(page.locator(".ask-status")).to_have_text("")
    shoot(page, "4-ask-answer")

    # An empty question is caught on the page, before any request.
    page.get_by_label("Question").fill(" ")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator(".ask-status")).to_have_text("Type a question first.")
