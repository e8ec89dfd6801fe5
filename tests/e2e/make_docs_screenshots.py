"""Make the README's screenshots: ``.venv/bin/python -m tests.e2e.make_docs_screenshots``.

Starts the real app under gunicorn on a throwaway WORKSPACES_DIR, fills it with a believable team (keys that are
active, expired and revoked; Askgate's own code as a workspace), and saves

- ``docs/account-security.png``: a limited key just generated, shown once with its copy button, and the key
  lists with each key's limits (one of them rotated, its old secret in its grace);
- ``docs/ask.png``: a question about the code, its answer and highlighted sources;

plus dark-mode versions of both under ``tests/e2e/screenshots/`` for review.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from app.keys.store import KeyStore, iso, utcnow
from tests.conftest import PASSWORD, ROOT, LiveServer
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, SCREENSHOTS, add_user, sign_in

DOCS = ROOT / "docs"
QUESTION = "How is an API key checked when a request comes in?"
ASK_HEIGHT = 1500


def seed(workspaces: Path) -> None:
    add_user(workspaces, "maria")
    add_user(workspaces, "deploy-bot", admin=False)
    keys = KeyStore(workspaces)
    laptop = keys.create("maria", "laptop", 90).record["id"]
    keys.rotate(laptop, 86_400)  # a day's grace still running: the row says until when the old secret works
    old = keys.create("maria", "staging-2025", 30).record["id"]
    leaked = keys.create("maria", "old-ci", None).record["id"]
    limits = {"scopes": ["ask"], "workspaces": ["askgate"], "rate_limit": 500, "allowed_ips": ["10.20.0.0/16"]}
    keys.create("deploy-bot", "release-pipeline", 365, limits=limits)
    keys.revoke(leaked)

    def expire(data: dict) -> None:
        for record in data["keys"]:
            if record["id"] == old:
                record["created_at"] = iso(utcnow() - timedelta(days=40))
                record["expires_at"] = iso(utcnow() - timedelta(days=10))

    keys.file.update(expire)
    # Askgate's own code makes a realistic workspace to ask about.
    shutil.copytree(ROOT / "app", workspaces / "askgate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "templates", workspaces / "askgate" / "templates")


def capture(page, dark: bool) -> None:
    out = SCREENSHOTS if dark else DOCS
    suffix = "-dark" if dark else ""
    out.mkdir(exist_ok=True)

    page.goto("/account/security")
    page.get_by_label("Key name").fill("ci-pipeline")
    page.get_by_label("Expires").select_option("90")
    page.get_by_label("List workspaces").uncheck()  # it only asks, about one workspace, from the runners' range
    page.get_by_label("askgate", exact=True).check()
    page.get_by_label("Requests per hour").fill("100")
    page.get_by_label("Allowed addresses").fill("10.20.0.0/16")
    page.get_by_role("button", name="Generate key").click()
    expect(page.get_by_label("New API key")).to_be_visible()
    page.evaluate("() => { document.activeElement.blur(); window.getSelection().removeAllRanges(); }")
    page.mouse.move(0, 0)  # no hover state in the picture
    page.screenshot(path=str(out / f"account-security{suffix}.png"), full_page=True)

    page.goto("/ask?workspace=askgate")
    page.get_by_label("Question").fill(QUESTION)
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#ask-result .source").first).to_be_visible(timeout=60_000)
    page.mouse.move(0, 0)
    # The question, the answer and the first sources; the rest of a long page adds nothing to a README.
    height = min(ASK_HEIGHT, page.evaluate("() => document.documentElement.scrollHeight"))
    page.screenshot(
        path=str(out / f"ask{suffix}.png"), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": height}
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workspaces = Path(tmp) / "workspaces"
        workspaces.mkdir()
        seed(workspaces)
        server = LiveServer(workspaces, {}, Path(tmp) / "gunicorn.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
                for dark in (False, True):
                    context = browser.new_context(
                        base_url=server.url, viewport=DESKTOP, color_scheme="dark" if dark else "light"
                    )
                    page = context.new_page()
                    sign_in(page, "maria", PASSWORD)
                    capture(page, dark)
                    context.close()
                browser.close()
        finally:
            server.stop()
    print(f"wrote {DOCS / 'account-security.png'} and {DOCS / 'ask.png'}")


if __name__ == "__main__":
    main()
