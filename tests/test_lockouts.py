"""Issue 10, lock-outs and limits (items 7-11), on real gunicorn: nobody can lock another user out, every
configured limit counts, a CSRF refusal costs no quota, minting keys does not multiply the limit, and the
failed-key throttle cannot be dodged by changing address inside one IPv6 /64."""

from __future__ import annotations

import logging
import re

import pytest
import requests

from app.config import load_config
from app.ratelimits import ClientLimits, address_bucket
from app.users.store import UserStore
from tests.conftest import ADMIN_KEY, CSRF_RE, PASSWORD, base_env
from tests.procnet import FromAddress

pytestmark = pytest.mark.server

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{49}")


def _browser(address: str = "127.0.0.1") -> requests.Session:
    http = requests.Session()
    http.mount("http://", FromAddress(address))
    return http


def _sign_in(http: requests.Session, base: str, username: str, password: str) -> requests.Response:
    token = CSRF_RE.search(http.get(base + "/login", timeout=10).text).group(1)
    data = {"username": username, "password": password, "csrf_token": token}
    return http.post(base + "/login", data=data, allow_redirects=False, timeout=10)


def _page_token(http: requests.Session, base: str) -> str:
    return CSRF_RE.search(http.get(base + "/account/security", timeout=10).text).group(1)


# -- 7: failures from elsewhere never lock the right password out -------------------------------------------
def test_failed_sign_ins_elsewhere_do_not_refuse_the_right_password(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "admin")
    server = live_server(LOGIN_RATE_LIMIT="5/minute")

    attackers = {address: _browser(address) for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
    statuses = {
        address: [_sign_in(http, server.url, "alice", f"guess {n}").status_code for n in range(8)]
        for address, http in attackers.items()
    }
    alice = _browser("127.0.0.1")
    signed_in = _sign_in(alice, server.url, "ALICE", PASSWORD)

    assert statuses == {address: [200] * 5 + [429] * 3 for address in attackers}
    assert signed_in.status_code == 302
    assert alice.get(server.url + "/api/whoami", timeout=10).json()["user"] == "alice"
    # the attacker's own address stays throttled, even with the right password
    assert _sign_in(attackers["127.0.0.2"], server.url, "alice", PASSWORD).status_code == 429


# -- 8: every limit of AUTH_FAILURE_LIMIT counts ----------------------------------------------------------------
def test_every_limit_of_auth_failure_limit_is_enforced(live_server):
    server = live_server(AUTH_FAILURE_LIMIT="100/minute;3/hour")
    wrong = {"x-api-key": "agk_" + "x" * 49}
    statuses = [requests.get(server.url + "/api/whoami", headers=wrong, timeout=10).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    refused = requests.get(server.url + "/api/whoami", headers={"x-api-key": ADMIN_KEY}, timeout=10)
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert 60 < int(refused.headers["Retry-After"]) <= 3600  # the hour's window, not the minute's


def test_the_failure_throttle_takes_the_tightest_limit_that_is_over():
    limits = ClientLimits(100, "2/minute;3/hour", None)
    assert [limits.record_failure("198.51.100.7") for _ in range(2)] == [None, None]
    over = limits.record_failure("198.51.100.7")
    assert over is not None and over["X-RateLimit-Limit"] == "2"
    assert limits.throttled("198.51.100.7") is not None


# -- 9: a request refused for CSRF spends no quota --------------------------------------------------------------
def test_requests_refused_for_csrf_do_not_count_against_the_hour(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server(API_RATE_LIMIT="3")
    http = _browser()
    assert _sign_in(http, server.url, "alice", PASSWORD).status_code == 302

    forged = [
        http.post(
            server.url + "/api/ask",
            data='{"workspaceId": "w", "question": "q"}',
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )
        for _ in range(5)
    ]
    mine = http.get(server.url + "/api/whoami", timeout=10)

    assert {r.status_code for r in forged} == {400}
    assert forged[0].json()["error"].startswith("CSRF token missing or invalid")
    assert "X-RateLimit-Remaining" not in forged[0].headers
    assert mine.status_code == 200
    assert mine.headers["X-RateLimit-Remaining"] == "2"


# -- 10: minting keys does not multiply the limit ---------------------------------------------------------------
def _create_key(http: requests.Session, base: str, token: str, name: str) -> requests.Response:
    return http.post(base + "/api/keys", json={"name": name}, headers={"X-CSRFToken": token}, timeout=10)


def test_key_creation_is_limited_per_user_on_the_api(live_server, workspaces):
    users = UserStore(workspaces)
    users.create("alice", PASSWORD, "member")
    users.create("bob", PASSWORD, "member")
    server = live_server(KEY_CREATE_LIMIT="3/hour")
    alice = _browser()
    _sign_in(alice, server.url, "alice", PASSWORD)
    token = _page_token(alice, server.url)

    invalid = _create_key(alice, server.url, token, "")  # a refused request is not counted
    made = [_create_key(alice, server.url, token, f"k{n}") for n in range(3)]
    refused = _create_key(alice, server.url, token, "one too many")
    by_admin_key = requests.post(
        server.url + "/api/keys", json={"name": "k4", "user": "alice"}, headers={"x-api-key": ADMIN_KEY}, timeout=10
    )
    bob = _browser()
    _sign_in(bob, server.url, "bob", PASSWORD)
    bobs = _create_key(bob, server.url, _page_token(bob, server.url), "bob's")

    assert invalid.status_code == 400
    assert [r.status_code for r in made] == [201, 201, 201]
    assert refused.status_code == 429
    message = refused.json()["error"]
    assert re.fullmatch(r"Key creation limit reached \(3/hour per user\); try again in \d+ (minutes|seconds)", message)
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert (by_admin_key.status_code, by_admin_key.json()["error"]) == (429, message)  # per owner, whoever asks
    assert bobs.status_code == 201
    names = sorted(k["name"] for k in alice.get(server.url + "/api/keys", timeout=10).json()["keys"])
    assert names == ["k0", "k1", "k2"]  # nothing was minted by a refused request


def test_key_creation_is_limited_on_the_account_security_page(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server(KEY_CREATE_LIMIT="2/hour")
    http = _browser()
    _sign_in(http, server.url, "alice", PASSWORD)

    def generate(name: str) -> requests.Response:
        page = http.get(server.url + "/account/security", timeout=10).text
        token = CSRF_RE.search(page).group(1)
        nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
        form = {"csrf_token": token, "nonce": nonce, "name": name, "expiry": "30"}
        return http.post(server.url + "/account/security", data=form, timeout=10)

    responses = [generate(f"k{n}") for n in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [len(KEY_RE.findall(r.text)) for r in responses] == [1, 1, 0]
    assert "Key creation limit reached (2/hour per user); try again in" in responses[2].text
    assert "<h1>Account Security</h1>" in responses[2].text  # the page itself, with its form
    assert 0 < int(responses[2].headers["Retry-After"]) <= 3600


def test_user_rate_limit_caps_all_of_one_users_keys_together(live_server, workspaces):
    users = UserStore(workspaces)
    users.create("alice", PASSWORD, "member")
    users.create("bob", PASSWORD, "member")
    server = live_server(USER_RATE_LIMIT="5", API_RATE_LIMIT="1000")

    def mint(owner: str, name: str) -> str:
        body = {"name": name, "user": owner}
        response = requests.post(server.url + "/api/keys", json=body, headers={"x-api-key": ADMIN_KEY}, timeout=10)
        return response.json()["key"]

    alice_keys = [mint("alice", f"k{n}") for n in range(3)]
    bob_key = mint("bob", "bob")

    def whoami(key: str) -> requests.Response:
        return requests.get(server.url + "/api/whoami", headers={"x-api-key": key}, timeout=10)

    spread = [whoami(alice_keys[n % 3]) for n in range(7)]

    assert [r.status_code for r in spread] == [200] * 5 + [429] * 2
    assert [r.headers["X-RateLimit-Remaining"] for r in spread] == ["4", "3", "2", "1", "0", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in spread} == {"5"}
    assert whoami(bob_key).status_code == 200
    assert whoami(bob_key).headers["X-RateLimit-Limit"] == "5"


def test_without_user_rate_limit_each_key_has_its_own_hour(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server(API_RATE_LIMIT="2")
    keys = [
        requests.post(
            server.url + "/api/keys",
            json={"name": f"k{n}", "user": "alice"},
            headers={"x-api-key": ADMIN_KEY},
            timeout=10,
        ).json()["key"]
        for n in range(2)
    ]
    statuses = [
        requests.get(server.url + "/api/whoami", headers={"x-api-key": keys[n % 2]}, timeout=10).status_code
        for n in range(4)
    ]
    assert statuses == [200] * 4


def test_account_security_pages_its_key_lists(app, auth, client):
    auth.create_user("alice", admin=True)
    auth.create_user("bob")
    for n in range(30):
        auth.new_key("alice", f"mine-{n:02}")
    for n in range(26):
        auth.new_key("bob", f"bobs-{n:02}")
    auth.login()

    first = client.get("/account/security").get_data(as_text=True)
    second = client.get("/account/security?page=2").get_data(as_text=True)
    beyond = client.get("/account/security?page=99").get_data(as_text=True)
    others = client.get("/account/security?page=2&others_page=2").get_data(as_text=True)

    def names(html: str, prefix: str) -> list[str]:
        return re.findall(rf'<td data-label="Name" class="cell-name">({prefix}-\d\d)</td>', html)

    assert len(names(first, "mine")) == 25 and len(names(second, "mine")) == 5
    assert set(names(first, "mine")) | set(names(second, "mine")) == {f"mine-{n:02}" for n in range(30)}
    assert names(beyond, "mine") == names(second, "mine")  # past the end: the last page
    assert "1–25 of 30" in first and "26–30 of 30" in second
    assert 'rel="next" href="/account/security?page=2"' in first and 'rel="prev"' not in first.split("Your keys")[1]
    assert 'rel="prev" href="/account/security?page=1"' in second
    assert "30 active of 30" in first
    assert len(names(first, "bobs")) == 25 and len(names(others, "bobs")) == 1
    assert len(names(others, "mine")) == 5  # each list keeps its own page
    assert 'href="/account/security?page=2&amp;others_page=1"' in others


def test_key_create_limit_defaults_to_twenty_an_hour(tmp_path):
    config = load_config({"WORKSPACES_DIR": str(tmp_path), "SECRET_KEY": "x"})
    assert config.key_create_limit == "20/hour"
    assert config.user_rate_limit is None
    limits = ClientLimits(100, "20/minute", None, key_create_limit=config.key_create_limit)
    for _ in range(20):
        limits.admit_key_creation("usr_1")
    with pytest.raises(Exception, match=r"^Key creation limit reached \(20/hour per user\)"):
        limits.admit_key_creation("usr_1")
    limits.admit_key_creation("usr_2")


# -- 11: the failed-key throttle counts an IPv6 client per /64 --------------------------------------------------
def test_address_buckets_group_ipv6_per_64():
    assert address_bucket("203.0.113.9") == "203.0.113.9"
    assert address_bucket("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert address_bucket("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_bucket("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_bucket("fe80::1%eth0") == "fe80::/64"


def test_failed_keys_from_one_ipv6_64_share_one_throttle(live_server):
    # The loopback peer is a trusted proxy by default, so X-Forwarded-For names the client as a proxy would.
    server = live_server(TRUSTED_PROXY_COUNT="1", AUTH_FAILURE_LIMIT="3/minute")
    wrong = {"x-api-key": "agk_" + "x" * 49}

    def attempt(client: str, headers: dict) -> int:
        headers = {**headers, "X-Forwarded-For": client}
        return requests.get(server.url + "/api/whoami", headers=headers, timeout=10).status_code

    guesses = [attempt(f"2001:db8:1:2::{n:x}", wrong) for n in range(1, 7)]
    assert guesses == [401, 401, 401, 429, 429, 429]
    assert attempt("2001:db8:1:2:abcd::1", {"x-api-key": ADMIN_KEY}) == 429
    assert attempt("2001:db8:1:3::1", {"x-api-key": ADMIN_KEY}) == 200


def test_short_valid_api_keys_get_the_same_warning_as_the_admin_key(tmp_path, caplog):
    env = {**base_env(tmp_path), "VALID_API_KEYS": "short-client-key, " + "k" * 32}
    with caplog.at_level(logging.WARNING, logger="askgate"):
        load_config(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "VALID_API_KEYS entry 1 is only 16 characters; use at least 32 random characters "
        '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
    ]
    assert not any("short-client-key" in w for w in warnings)
