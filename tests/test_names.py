"""Names are text: key names, usernames and workspace ids refuse what is not (one rule, app/names.py).

A name already stored against that rule (an older version accepted it, or the file was edited) still renders,
escaped, on every page and in the CLI.
"""

from __future__ import annotations

import json
import re

import pytest

from app.keys.store import KeyRequestError
from app.names import name_problem, shown
from app.users.store import UserError
from tests.conftest import ADMIN_KEY, PASSWORD, csrf_from
from tests.test_cli import _flask

ADMIN = {"x-api-key": ADMIN_KEY}
NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')

# (character, how the refusal describes it)
REFUSED = [
    ("\ud800", "U+D800, a lone surrogate, which is not text"),
    ("\udfff", "U+DFFF, a lone surrogate, which is not text"),
    ("\u202a", "U+202A LEFT-TO-RIGHT EMBEDDING, a bidi control, which reorders the text around it"),
    ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE, a bidi control, which reorders the text around it"),
    ("\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE, a bidi control, which reorders the text around it"),
    ("\u2069", "U+2069 POP DIRECTIONAL ISOLATE, a bidi control, which reorders the text around it"),
    ("\u200b", "U+200B ZERO WIDTH SPACE, a zero-width character"),
    ("\u200d", "U+200D ZERO WIDTH JOINER, a zero-width character"),
    ("\u2060", "U+2060 WORD JOINER, a zero-width character"),
    ("\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE, a zero-width character"),
    ("\x80", "U+0080, a control character"),
    ("\x9f", "U+009F, a control character"),
    ("\x07", "U+0007, a control character"),
]


@pytest.mark.parametrize(("char", "described"), REFUSED)
def test_a_key_name_that_is_not_text_is_a_400_naming_name(client, auth, char, described):
    auth.create_user("alice")
    body = '{"name": "evil' + json.dumps(char)[1:-1] + 'name", "user": "alice"}'  # JSON escapes, as a client sends
    response = client.post("/api/keys", data=body, content_type="application/json", headers=ADMIN)
    assert (response.status_code, response.get_json()) == (
        400,
        {"error": f"name must be plain text: character 5 is {described}"},
    )
    assert auth.services.keys.list() == []


@pytest.mark.parametrize("name", ["ci-pipeline", "Déploiement nocturne", "ビルド", "deploy 🚀", "a\u00a0b", "עברית"])
def test_ordinary_names_in_any_script_are_accepted(auth, name):
    auth.create_user("alice")
    assert auth.services.keys.create("alice", name).record["name"] == name
    assert name_problem(name, "name") is None


def test_the_page_shows_the_refusal_and_creates_nothing(client, auth):
    auth.create_user("alice")
    auth.login("alice")
    html = client.get("/account/security").get_data(as_text=True)
    data = {"csrf_token": csrf_from(html), "nonce": NONCE_RE.search(html).group(1), "expiry": "never"}
    response = client.post("/account/security", data={**data, "name": "invoice\u202egpj.exe"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "name must be plain text: character 8 is U+202E RIGHT-TO-LEFT OVERRIDE" in page
    assert "\u202e" not in page  # the posted value comes back escaped, not as a live override
    assert auth.services.keys.list() == []


@pytest.mark.parametrize(("char", "described"), REFUSED[:1] + REFUSED[3:4] + REFUSED[6:7] + REFUSED[10:11])
def test_usernames_follow_the_same_rule(auth, char, described):
    with pytest.raises(UserError) as refused:
        auth.services.users.create("ali" + char + "ce", PASSWORD)
    assert str(refused.value) == f"username must be plain text: character 4 is {described}"
    assert auth.services.users.count() == 0


def test_the_admin_page_refuses_such_a_username(client, auth):
    auth.create_user("root", admin=True)
    auth.login("root")
    page = client.get("/admin/users").get_data(as_text=True)
    response = client.post(
        "/admin/users",
        data={"csrf_token": csrf_from(page), "username": "bob\u200b", "password": PASSWORD, "role": "member"},
        follow_redirects=True,
    )
    assert response.status_code in (200, 400)
    assert "username must be plain text: character 4 is U+200B ZERO WIDTH SPACE" in response.get_data(as_text=True)
    assert [u.username for u in auth.services.users.list()] == ["root"]


@pytest.mark.parametrize(("char", "described"), REFUSED[:1] + REFUSED[3:4] + REFUSED[6:7] + REFUSED[10:11])
def test_workspace_ids_follow_the_same_rule(client, char, described, tmp_path, workspaces):
    body = '{"workspaceId": "de' + json.dumps(char)[1:-1] + 'mo", "question": "q"}'
    response = client.post("/api/ask", data=body, content_type="application/json", headers=ADMIN)
    assert (response.status_code, response.get_json()) == (
        400,
        {"error": f"workspaceId must be plain text: character 3 is {described}"},
    )
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.py").write_text("x = 1\n")
    if char < "\ud800" or char > "\udfff":  # a command line cannot carry a lone surrogate
        result = _flask(workspaces, "workspace", "import", "de" + char + "mo", str(source))
        assert result.returncode == 1
        assert result.stderr == f"Error: The workspace id must be plain text: character 3 is {described}\n"
        assert sorted(p.name for p in workspaces.iterdir() if not p.name.startswith(".")) == []


def test_the_cli_refuses_such_a_key_name(app, auth, workspaces):
    auth.create_user("alice")
    result = _flask(workspaces, "key", "create", "--user", "alice", "--name", "ci\u2066")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: name must be plain text: character 3 is U+2066 LEFT-TO-RIGHT ISOLATE, "
        "a bidi control, which reorders the text around it\n"
    )
    assert auth.services.keys.list() == []


# -- a store that already holds such names -----------------------------------------------------------------
@pytest.fixture
def tainted(app, auth, workspaces):
    """alice (admin) owns a key whose stored name is ``evil\\ud800na\\u202eme``, as an old version let through."""
    auth.create_user("alice", admin=True)
    record = auth.services.keys.create("alice", "placeholder").record
    path = workspaces / "api-keys.json"
    text = path.read_text()
    assert '"placeholder"' in text
    path.write_text(text.replace('"placeholder"', '"evil\\ud800na\\u202eme"'))
    assert auth.services.keys.get(record["id"])["name"] == "evil\ud800na\u202eme"
    return record["id"]


def test_pages_still_render_such_a_name_escaped(client, auth, tainted):
    auth.login("alice")
    for path in ("/account/security", "/admin/users", "/dashboard"):
        response = client.get(path)
        assert response.status_code == 200, path
    page = client.get("/account/security").get_data(as_text=True)
    assert "evil\\ud800na\\u202eme" in page
    assert "\u202e" not in page


def test_the_api_lists_and_revokes_such_a_key(client, auth, tainted):
    listing = client.get("/api/keys", headers=ADMIN)
    assert listing.status_code == 200
    assert [k["name"] for k in listing.get_json()["keys"]] == ["evil\ud800na\u202eme"]  # JSON escapes it
    revoked = client.patch(f"/api/keys/{tainted}", json={"active": False}, headers=ADMIN)
    assert revoked.status_code == 200


def test_flask_key_list_still_lists_such_a_key(workspaces, tainted):
    result = _flask(workspaces, "key", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[1:3] == ["alice", "evil\\ud800na\\u202eme"]


def test_shown_escapes_only_what_the_rule_refuses():
    assert shown("plain Déjà vu 🚀") == "plain Déjà vu 🚀"
    assert shown("a\ud800b\u202ec\u200bd\x85e\tf") == "a\\ud800b\\u202ec\\u200bd\\x85e\\x09f"


def test_key_store_refuses_directly_too(auth):
    auth.create_user("alice")
    with pytest.raises(KeyRequestError):
        auth.services.keys.create("alice", "x\ufeff")
