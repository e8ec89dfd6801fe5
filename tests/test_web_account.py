"""Account Security: generate a key (shown once), revoke keys, change the password."""

from __future__ import annotations

import html as htmllib
import re
from datetime import timedelta

import pytest

from app.keys.store import key_status, parse_iso, utcnow
from tests.conftest import PASSWORD, AuthActions, csrf_from

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")
NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')
NEW_PASSWORD = "another long passphrase"


def _generate(client, name: str = "ci", expiry: str = "never", page: str | None = None, **limits):
    """Post the generate form; ``limits`` (form field names) also sends the limits as the page's form does."""
    html = page or client.get("/account/security").get_data(as_text=True)
    data = {
        "csrf_token": csrf_from(html),
        "nonce": NONCE_RE.search(html).group(1),
        "name": name,
        "expiry": expiry,
    }
    if limits:
        data |= {"with_limits": "1", "scopes": ["ask", "workspaces:read"], "workspace_access": "all", **limits}
    return client.post("/account/security", data=data), data


def _whoami_status(app, key: str) -> int:
    return app.test_client().get("/api/whoami", headers={"x-api-key": key}).status_code


@pytest.fixture
def alice(client, auth):
    auth.create_user("alice")
    auth.login("alice")
    return auth


def test_the_new_key_is_shown_exactly_once(app, client, alice):
    response, _ = _generate(client, "ci-pipeline")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    keys = KEY_RE.findall(html)
    assert len(keys) == 1
    key = keys[0]
    assert "you won&#39;t see it again" in html or "you won't see it again" in html
    assert "data-copy" in html  # the copy button
    assert response.headers["Cache-Control"] == "no-store"

    record = alice.services.keys.lookup(key)
    assert (record["owner"], record["name"], record["expires_at"]) == ("alice", "ci-pipeline", None)
    assert _whoami_status(app, key) == 200

    for path in ("/account/security", "/dashboard"):
        later = client.get(path).get_data(as_text=True)
        assert key not in later and key[12:] not in later
    assert record["prefix"] in client.get("/account/security").get_data(as_text=True)


@pytest.mark.parametrize(("expiry", "days"), [("30", 30), ("90", 90), ("365", 365)])
def test_expiry_choices(client, alice, expiry, days):
    response, _ = _generate(client, "k", expiry)
    record = alice.services.keys.lookup(KEY_RE.search(response.get_data(as_text=True)).group(0))
    assert parse_iso(record["expires_at"]) - parse_iso(record["created_at"]) == timedelta(days=days)


def test_an_unknown_expiry_is_refused(client, alice):
    response, _ = _generate(client, "k", "7")
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.list() == []


def test_resubmitting_the_same_form_does_not_mint_a_second_key(client, alice):
    first, data = _generate(client)
    assert first.status_code == 200
    again = client.post("/account/security", data=data)
    assert again.status_code == 303
    assert again.headers["Location"] == "/account/security"
    assert len(alice.services.keys.list()) == 1
    assert "already created" in client.get("/account/security").get_data(as_text=True)


def test_generating_needs_the_csrf_token(client, alice):
    html = client.get("/account/security").get_data(as_text=True)
    response = client.post(
        "/account/security", data={"name": "k", "expiry": "never", "nonce": NONCE_RE.search(html).group(1)}
    )
    assert response.status_code == 400
    assert alice.services.keys.list() == []


def test_an_empty_name_shows_the_form_again(client, alice):
    response, _ = _generate(client, "   ")
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.list() == []


def test_a_corrupt_key_store_is_reported_not_overwritten(client, alice):
    html = client.get("/account/security").get_data(as_text=True)
    path = alice.services.keys.file.path
    path.write_text("{broken")
    response, _ = _generate(client, page=html)
    assert response.status_code == 503
    assert path.read_text() == "{broken"


def test_revoke_own_key(app, client, alice):
    new = alice.services.keys.create("alice", "k")
    assert _whoami_status(app, new.key) == 200
    response = client.post("/account/security/revoke", data={"csrf_token": alice.csrf(), "key_id": new.record["id"]})
    assert (response.status_code, response.headers["Location"]) == (303, "/account/security")
    assert key_status(alice.services.keys.get(new.record["id"])) == "revoked"
    assert _whoami_status(app, new.key) == 401
    assert "is revoked" in client.get("/account/security").get_data(as_text=True)


def test_revoking_needs_the_csrf_token(client, alice):
    new = alice.services.keys.create("alice", "k")
    response = client.post("/account/security/revoke", data={"key_id": new.record["id"]})
    assert response.status_code == 400
    assert alice.services.keys.get(new.record["id"])["revoked_at"] is None


def test_a_member_neither_sees_nor_revokes_others_keys(client, alice):
    alice.create_user("bob")
    theirs = alice.services.keys.create("bob", "bobs-secret-name")
    assert "bobs-secret-name" not in client.get("/account/security").get_data(as_text=True)
    response = client.post("/account/security/revoke", data={"csrf_token": alice.csrf(), "key_id": theirs.record["id"]})
    assert response.status_code == 303
    assert "That key does not exist." in client.get("/account/security").get_data(as_text=True)
    assert alice.services.keys.get(theirs.record["id"])["revoked_at"] is None


def test_an_admin_sees_and_revokes_everyones_keys(app, client, auth):
    auth.create_user("root", admin=True)
    auth.create_user("bob")
    theirs = auth.services.keys.create("bob", "bobs-key")
    auth.login("root")
    html = client.get("/account/security").get_data(as_text=True)
    assert "bobs-key" in html and theirs.record["prefix"] in html
    assert theirs.key not in html
    response = client.post("/account/security/revoke", data={"csrf_token": auth.csrf(), "key_id": theirs.record["id"]})
    assert response.status_code == 303
    assert _whoami_status(app, theirs.key) == 401


# -- password -------------------------------------------------------------------------------------------------
def _change_password(client, auth, current: str, new: str, confirm: str | None = None):
    return client.post(
        "/account/password",
        data={
            "csrf_token": auth.csrf("/account/security"),
            "current_password": current,
            "new_password": new,
            "confirm": new if confirm is None else confirm,
        },
    )


def test_a_password_change_ends_other_sessions_but_not_this_one(app, client, alice):
    other = app.test_client()
    AuthActions(app, other).login("alice")
    assert other.get("/dashboard").status_code == 200

    response = _change_password(client, alice, PASSWORD, NEW_PASSWORD)
    assert (response.status_code, response.headers["Location"]) == (303, "/account/security")
    assert client.get("/dashboard").status_code == 200
    assert client.get("/api/whoami").get_json()["user"] == "alice"
    assert other.get("/dashboard").status_code == 302
    assert other.get("/api/whoami").status_code == 401

    assert alice.services.users.authenticate("alice", PASSWORD) is None
    assert alice.services.users.authenticate("alice", NEW_PASSWORD) is not None


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password!", NEW_PASSWORD, None, "That is not your current password."),
        (PASSWORD, "short", None, "Field must be between 10 and 1024 characters long."),
        (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "The passwords do not match"),
    ],
)
def test_a_refused_password_change_changes_nothing(client, alice, current, new, confirm, message):
    response = _change_password(client, alice, current, new, confirm)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert alice.services.users.authenticate("alice", PASSWORD) is not None
    assert client.get("/dashboard").status_code == 200


def test_a_password_change_needs_the_csrf_token(client, alice):
    response = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert alice.services.users.authenticate("alice", PASSWORD) is not None


# -- limits ---------------------------------------------------------------------------------------------------
def _text(response) -> str:
    """The page as a reader sees it: entities decoded."""
    return htmllib.unescape(response.get_data(as_text=True))


def _field_error(response, field: str) -> str | None:
    match = re.search(rf'<p class="error" id="{field}-err">([^<]*)</p>', response.get_data(as_text=True))
    return htmllib.unescape(match.group(1)) if match else None


def test_a_key_with_limits_gets_them_and_its_row_shows_them(client, alice, workspaces):
    (workspaces / "shop").mkdir()
    (workspaces / "other").mkdir()
    response, _ = _generate(
        client,
        "ci-shop",
        scopes=["ask"],
        workspace_access="chosen",
        workspaces=["shop"],
        rate_limit=" 25 ",
        allowed_ips="127.0.0.1\n10.1.2.3/8, 2001:db8::/32",
    )
    assert response.status_code == 200
    key = KEY_RE.search(response.get_data(as_text=True)).group(0)
    record = alice.services.keys.lookup(key)
    assert {name: record[name] for name in ("scopes", "workspaces", "rate_limit", "allowed_ips")} == {
        "scopes": ["ask"],
        "workspaces": ["shop"],
        "rate_limit": 25,
        "allowed_ips": ["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"],
    }
    row = re.search(r'<tr class="key-active">.*?</tr>', client.get("/account/security").get_data(as_text=True), re.S)
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))
    assert "Scopes ask Workspaces shop Rate limit 25/hour Allowed IPs 127.0.0.1/32 10.0.0.0/8 2001:db8::/32" in cells


def test_a_key_without_limits_shows_the_defaults(client, alice):
    response, _ = _generate(client, "plain", rate_limit="", allowed_ips="  ")
    record = alice.services.keys.lookup(KEY_RE.search(response.get_data(as_text=True)).group(0))
    assert (record["scopes"], record["workspaces"], record["rate_limit"], record["allowed_ips"]) == (
        ["ask", "workspaces:read"],
        None,
        None,
        None,
    )
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", client.get("/account/security").get_data(as_text=True)))
    assert "Scopes ask workspaces:read Workspaces all Rate limit 1,000/hour (instance) Allowed IPs any" in cells


def test_a_post_without_the_limit_fields_makes_a_key_with_the_defaults(client, alice):
    response, _ = _generate(client, "older-form")  # as scripts driving the page sent before keys had limits
    record = alice.services.keys.lookup(KEY_RE.search(response.get_data(as_text=True)).group(0))
    assert record["scopes"] == ["ask", "workspaces:read"]


RATE_MESSAGE = "rate_limit must be a whole number of requests per hour from 1 to {}, or null for the instance's limit"


@pytest.mark.parametrize(
    ("limits", "field", "message"),
    [
        (
            {"scopes": []},
            "scopes",
            'scopes must be a non-empty list of "ask", "workspaces:read", "workspaces:write"',
        ),
        (
            {"workspace_access": "chosen", "workspaces": []},
            "workspace_access",
            "workspaces must be null (every workspace) or a non-empty list of workspace ids",
        ),
        (
            {"workspace_access": "chosen", "workspaces": ["shop", "nope"]},
            "workspace_access",
            "workspaces: there is no workspace 'nope'",
        ),
        (
            {"workspace_access": "all", "workspaces": ["shop"]},
            "workspace_access",
            "You ticked workspaces but chose “All workspaces”: choose “Only these” or untick them.",
        ),
        ({"rate_limit": "many"}, "rate_limit", RATE_MESSAGE.format(1000)),  # a member: her own bound
        ({"rate_limit": "0"}, "rate_limit", RATE_MESSAGE.format(1000)),  # a member: her own bound
        ({"rate_limit": "2.5"}, "rate_limit", RATE_MESSAGE.format(1000)),  # a member: her own bound
        ({"rate_limit": "1001"}, "rate_limit", RATE_MESSAGE.format(1000)),
        (
            {"allowed_ips": "10.0.0.1\n10.0.0.300"},
            "allowed_ips",
            "allowed_ips: '10.0.0.300' is not an IP address or CIDR range (examples: 203.0.113.7, 10.0.0.0/8, "
            "2001:db8::/32)",
        ),
    ],
)
def test_a_refused_limit_is_a_message_on_its_field_and_changes_nothing(
    client, alice, workspaces, limits, field, message
):
    (workspaces / "shop").mkdir()
    response, _ = _generate(client, "limited", **limits)
    assert response.status_code == 200
    assert _field_error(response, field) == message
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.list() == []
    # What was typed stays in the form, to be corrected.
    assert 'value="limited"' in response.get_data(as_text=True)


def test_a_member_is_not_offered_workspaces_write_and_cannot_give_it(client, alice):
    page = client.get("/account/security").get_data(as_text=True)
    assert 'value="workspaces:write"' not in page
    assert 'value="ask"' in page and 'value="workspaces:read"' in page

    response, _ = _generate(client, "sneaky", scopes=["ask", "workspaces:write"])
    assert _field_error(response, "scopes") == "Only admins can give a key workspaces:write"
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.list() == []


def test_an_admin_can_give_workspaces_write(client, auth):
    auth.create_user("root", admin=True)
    auth.login("root")
    page = client.get("/account/security").get_data(as_text=True)
    assert 'value="workspaces:write"' in page
    response, _ = _generate(client, "ci-upload", scopes=["workspaces:write"], rate_limit="500000")
    record = auth.services.keys.lookup(KEY_RE.search(response.get_data(as_text=True)).group(0))
    assert (record["scopes"], record["rate_limit"]) == (["workspaces:write"], 500000)


# -- rotation -------------------------------------------------------------------------------------------------
def _rotate(client, key_id: str, grace: str = "86400", page: str | None = None):
    html = page or client.get("/account/security").get_data(as_text=True)
    data = {"csrf_token": csrf_from(html), "nonce": NONCE_RE.search(html).group(1), "key_id": key_id}
    if grace is not None:
        data["grace_seconds"] = grace
    return client.post("/account/security/rotate", data=data), data


def test_rotating_shows_the_new_secret_once_and_the_row_shows_the_grace(app, client, alice, workspaces):
    (workspaces / "shop").mkdir()
    old = alice.services.keys.create("alice", "deploy", 30)
    before = alice.services.keys.get(old.record["id"])
    page = client.get("/account/security").get_data(as_text=True)
    assert "Rotate key deploy" in page

    response, data = _rotate(client, old.record["id"], "3600", page=page)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    keys = KEY_RE.findall(response.get_data(as_text=True))
    assert len(keys) == 1 and keys[0] != old.key
    new_key = keys[0]
    text = _text(response)
    assert "New secret for “deploy”" in text
    assert "Copy it now: you won't see it again." in text

    record = alice.services.keys.get(old.record["id"])
    assert alice.services.keys.lookup(new_key)["id"] == old.record["id"]
    assert record["expires_at"] == before["expires_at"]  # the key's own expiry does not move
    assert parse_iso(record["previous_expires_at"]) - utcnow() == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=5)
    )
    assert f'The previous secret keeps working until <time datetime="{record["previous_expires_at"]}"' in text
    assert _whoami_status(app, new_key) == 200
    assert _whoami_status(app, old.key) == 200  # within the grace

    later = client.get("/account/security").get_data(as_text=True)
    assert new_key not in later and old.key not in later
    assert record["prefix"] in later
    assert re.search(
        rf'<p class="grace">previous secret valid until <time datetime="{record["previous_expires_at"]}"', later
    )

    # The same form again (a reload or the back button) does not rotate again, which would end the grace.
    again = client.post("/account/security/rotate", data=data)
    assert (again.status_code, again.headers["Location"]) == (303, "/account/security")
    assert alice.services.keys.get(old.record["id"])["digest"] == record["digest"]
    assert alice.services.keys.get(old.record["id"])["previous_expires_at"] == record["previous_expires_at"]
    assert "already rotated" in client.get("/account/security").get_data(as_text=True)
    assert _whoami_status(app, old.key) == 200


def test_rotating_without_a_grace_ends_the_old_secret_at_once(app, client, alice):
    old = alice.services.keys.create("alice", "deploy")
    response, _ = _rotate(client, old.record["id"], "0")
    new_key = KEY_RE.search(response.get_data(as_text=True)).group(0)
    assert "The previous secret no longer works." in _text(response)
    assert _whoami_status(app, old.key) == 401
    assert _whoami_status(app, new_key) == 200
    assert 'class="grace"' not in client.get("/account/security").get_data(as_text=True)


def test_rotation_keeps_the_limits(client, alice, workspaces):
    (workspaces / "shop").mkdir()
    response, _ = _generate(
        client, "ci", scopes=["ask"], workspace_access="chosen", workspaces=["shop"], rate_limit="7"
    )
    key = KEY_RE.search(response.get_data(as_text=True)).group(0)
    record = alice.services.keys.lookup(key)
    rotated, _ = _rotate(client, record["id"])
    new = alice.services.keys.lookup(KEY_RE.search(rotated.get_data(as_text=True)).group(0))
    limits = ("id", "name", "scopes", "workspaces", "rate_limit", "allowed_ips")
    assert {n: new[n] for n in limits} == {n: record[n] for n in limits}


def test_the_grace_is_a_day_unless_chosen(client, alice):
    old = alice.services.keys.create("alice", "deploy")
    page = client.get("/account/security").get_data(as_text=True)
    assert '<option value="86400" selected>1 day</option>' in page
    _rotate(client, old.record["id"], None, page=page)
    until = parse_iso(alice.services.keys.get(old.record["id"])["previous_expires_at"])
    assert until - utcnow() == pytest.approx(timedelta(days=1), abs=timedelta(seconds=5))


@pytest.mark.parametrize("grace", ["5", "-1", "604801", "", "1 day"])
def test_a_grace_not_offered_is_refused_and_changes_nothing(client, alice, grace):
    old = alice.services.keys.create("alice", "deploy")
    before = alice.services.keys.get(old.record["id"])
    response, _ = _rotate(client, old.record["id"], grace)
    assert response.status_code == 400
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.get(old.record["id"]) == before


def test_rotating_needs_the_csrf_token(client, alice):
    old = alice.services.keys.create("alice", "deploy")
    before = alice.services.keys.get(old.record["id"])
    response = client.post("/account/security/rotate", data={"key_id": old.record["id"], "grace_seconds": "0"})
    assert response.status_code == 400
    assert alice.services.keys.get(old.record["id"]) == before


def test_a_member_cannot_rotate_anothers_key(app, client, alice):
    alice.create_user("bob")
    theirs = alice.services.keys.create("bob", "bobs-key")
    before = alice.services.keys.get(theirs.record["id"])
    response, _ = _rotate(client, theirs.record["id"], "0")
    assert (response.status_code, response.headers["Location"]) == (303, "/account/security")
    assert "That key does not exist." in client.get("/account/security").get_data(as_text=True)
    assert alice.services.keys.get(theirs.record["id"]) == before
    assert _whoami_status(app, theirs.key) == 200


def test_a_revoked_key_cannot_be_rotated(client, alice):
    old = alice.services.keys.create("alice", "deploy")
    alice.services.keys.revoke(old.record["id"])
    page = client.get("/account/security").get_data(as_text=True)
    assert "Rotate key deploy" not in page  # no button for it
    before = alice.services.keys.get(old.record["id"])
    response, _ = _rotate(client, old.record["id"], page=page)
    assert response.status_code == 303
    assert "Only an active key can be rotated" in client.get("/account/security").get_data(as_text=True)
    assert alice.services.keys.get(old.record["id"]) == before


def test_an_admin_rotates_anyones_key(app, client, auth):
    auth.create_user("root", admin=True)
    auth.create_user("bob")
    theirs = auth.services.keys.create("bob", "bobs-key")
    auth.login("root")
    assert "Rotate key bobs-key" in client.get("/account/security").get_data(as_text=True)
    response, _ = _rotate(client, theirs.record["id"], "0")
    new_key = KEY_RE.search(response.get_data(as_text=True)).group(0)
    assert _whoami_status(app, theirs.key) == 401
    assert app.test_client().get("/api/whoami", headers={"x-api-key": new_key}).get_json()["user"] == "bob"
