"""Flow 7: a key's usage page (/account/keys/<id>) and the admin's /admin/usage: the chart, its text alternative and
its totals, desktop and phone, light and dark."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import PHONE, add_user, shoot, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.server]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_key_page_charts_the_keys_requests(live_server, workspaces, new_context, scheme):
    add_user(workspaces)
    server = live_server()
    made = requests.post(
        server.url + "/api/keys", headers={"x-api-key": ADMIN_KEY}, json={"name": "ci-bot", "user": "admin"}, timeout=10
    ).json()
    for _ in range(5):
        assert requests.get(server.url + "/api/whoami", headers={"x-api-key": made["key"]}, timeout=10).ok
    page = new_context(server, color_scheme=scheme).new_page()
    sign_in(page)
    page.get_by_role("link", name="Account Security").click()
    spark = page.locator("a.spark-link svg.spark")
    expect(spark).to_have_count(1)
    expect(spark).to_have_attribute("aria-label", "Key ci-bot: 5 requests in the last 7 days, at most 5 in an hour")
    page.get_by_role("link", name="Usage of key ci-bot").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("ci-bot")

    chart = page.get_by_role("img", name=re.compile(r"^Requests with key ci-bot in the last 7 days, by hour: 5 OK"))
    expect(chart).to_be_visible()
    expect(chart.locator("rect.chart-ok")).to_have_count(1)
    bar = chart.locator("rect.chart-ok").bounding_box()
    assert bar["height"] > 50  # the one busy hour is the chart's full height
    expect(page.locator('dd[data-total="ok"]')).to_have_text("5")
    expect(page.locator("dd[data-last-used]")).to_contain_text("127.0.0.1")
    expect(page.locator("table.audit tbody tr")).to_have_count(1)  # its creation
    fill = page.evaluate("() => getComputedStyle(document.querySelector('rect.chart-ok')).fill")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert fill != background
    shoot(page, f"7-key-usage-{scheme}")

    page.get_by_role("link", name="90 days by day").click()
    expect(page.get_by_role("img", name=re.compile(r"in the last 90 days, by day: 5 OK"))).to_be_visible()

    page.set_viewport_size(PHONE)
    width = page.evaluate("() => document.documentElement.clientWidth")
    box = page.locator("svg.chart").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["width"] > width * 0.6
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width

    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage")
    expect(page.get_by_role("img", name=re.compile(r"^Requests with keys on this instance"))).to_be_visible()
    expect(page.locator("table.busiest tbody tr").first).to_contain_text("ci-bot")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
