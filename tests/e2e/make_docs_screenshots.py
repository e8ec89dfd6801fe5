"""Make the README's screenshots: ``.venv/bin/python -m tests.e2e.make_docs_screenshots``.

Starts the real app under gunicorn on a throwaway WORKSPACES_DIR, fills it with a believable team (keys that are
active, expired and revoked; Askgate's own code as a workspace), and saves

- ``docs/account-security.png``: a limited key just generated, shown once with its copy button, and the key
  lists with each key's limits (one of them rotated, its old secret in its grace);
- ``docs/ask.png``: a question about the code, its answer and highlighted sources;
- ``docs/key-usage.png``: a key's page (/account/keys/<id>): a week of its requests by hour, the totals, its last
  use and the changes made to it;
- ``docs/admin-audit.png``: the admin's Audit log (/admin/audit): who created, changed and revoked which key;

plus dark-mode versions of each under ``tests/e2e/screenshots/`` for review.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from app import accounts, usage
from app.config import load_config
from app.keys.store import iso, utcnow
from tests.conftest import PASSWORD, ROOT, LiveServer, base_env
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, SCREENSHOTS, add_user, sign_in

DOCS = ROOT / "docs"
QUESTION = "How is an API key checked when a request comes in?"
ASK_HEIGHT = 1500


def seed(workspaces: Path) -> str:
    """The team, its keys (made through the accounts layer, so the audit log has them) and a week of usage;
    returns the id of the key whose page is shown."""
    from app import create_app

    add_user(workspaces, "maria")
    add_user(workspaces, "deploy-bot", admin=False)
    # Askgate's own code makes a realistic workspace to ask about.
    shutil.copytree(ROOT / "app", workspaces / "askgate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "templates", workspaces / "askgate" / "templates")
    app = create_app(load_config(base_env(workspaces)))
    maria = accounts.Actor("session", "maria", True, ip="192.0.2.44")
    with app.app_context():
        keys = app.extensions["askgate"].keys
        laptop = accounts.create_key_for(maria, None, "laptop", 90).record["id"]
        accounts.update_key(maria, laptop, {"rate_limit": 2000})
        accounts.rotate_key(maria, laptop, 86_400)  # a day's grace still running: the row says until when
        old = accounts.create_key_for(maria, None, "staging-2025", 30).record["id"]
        leaked = accounts.create_key_for(maria, None, "old-ci", None).record["id"]
        limits = {"scopes": ["ask"], "workspaces": ["askgate"], "rate_limit": 500, "allowed_ips": ["10.20.0.0/16"]}
        accounts.create_key_for(accounts.Actor.operator(), "deploy-bot", "release-pipeline", 365, limits=limits)
        accounts.revoke_key(maria, leaked)

        def expire(data: dict) -> None:
            for record in data["keys"]:
                if record["id"] == old:
                    record["created_at"] = iso(utcnow() - timedelta(days=40))
                    record["expires_at"] = iso(utcnow() - timedelta(days=10))

        keys.file.update(expire)
    seed_usage(workspaces, usage.key_bucket(laptop))
    return laptop


def seed_usage(workspaces: Path, bucket: str) -> None:
    """A week of a laptop key's requests: busy working hours, quiet nights and weekend, a few mistakes and 429s."""
    rng = random.Random(7)
    now = time.time()
    counts = {}
    for start in usage.period_starts("hour", now):
        hour = time.gmtime(start)
        busy = hour.tm_wday < 5 and 8 <= hour.tm_hour < 18
        ok = rng.randint(40, 120) if busy else rng.choice((0, 0, 0, 2, 5))
        errors = rng.choice((0, 0, 0, 1, 3)) if ok else 0
        limited = rng.choice((0,) * 12 + (6,)) if busy else 0
        denied = 1 if rng.random() < 0.02 else 0
        if ok or errors or limited or denied:
            counts[(bucket, start)] = [ok, errors, limited, denied]
    last = {bucket: usage.LastUse(now - 300, "192.0.2.44")}
    usage.SQLiteUsage(workspaces / usage.FILE_NAME).add(counts, last, now)


def capture(page, dark: bool, key_id: str) -> None:
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

    page.goto(f"/account/keys/{key_id}")
    expect(page.locator("svg.chart rect.chart-ok").first).to_be_visible()
    page.mouse.move(0, 0)
    page.screenshot(path=str(out / f"key-usage{suffix}.png"), full_page=True)

    page.goto("/admin/audit")
    expect(page.locator("table.audit tbody tr").first).to_be_visible()
    page.mouse.move(0, 0)
    page.screenshot(path=str(out / f"admin-audit{suffix}.png"), full_page=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workspaces = Path(tmp) / "workspaces"
        workspaces.mkdir()
        key_id = seed(workspaces)
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
                    capture(page, dark, key_id)
                    context.close()
                browser.close()
        finally:
            server.stop()
    names = ("account-security", "ask", "key-usage", "admin-audit")
    print("wrote " + ", ".join(str(DOCS / f"{name}.png") for name in names))


if __name__ == "__main__":
    main()
