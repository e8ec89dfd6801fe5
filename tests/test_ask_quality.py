"""Retrieval quality: hit@3 on questions about the installed sources of Flask and its dependencies."""

import importlib.util
import shutil
from pathlib import Path

import pytest

from app.ask import ask

PACKAGES = ("flask", "werkzeug", "jinja2", "click", "itsdangerous")

# (question as a user would phrase it, acceptable (path, defining symbol) answers)
QUESTIONS = [
    (
        "How is the session cookie saved on the response?",
        [("flask/sessions.py", "SecureCookieSessionInterface.save_session")],
    ),
    (
        "How do I build the URL for a view from its endpoint name?",
        [("flask/helpers.py", "url_for"), ("flask/app.py", "Flask.url_for")],
    ),
    (
        "Which serializer signs the session data with the secret key?",
        [
            ("flask/sessions.py", "SecureCookieSessionInterface.get_signing_serializer"),
            ("flask/sessions.py", "SecureCookieSessionInterface"),
        ],
    ),
    ("How can settings be loaded from a Python file?", [("flask/config.py", "Config.from_pyfile")]),
    (
        "Load config values from environment variables that start with FLASK_",
        [("flask/config.py", "Config.from_prefixed_env")],
    ),
    (
        "How do blueprints get registered on the app?",
        [("flask/sansio/app.py", "App.register_blueprint"), ("flask/sansio/blueprints.py", "Blueprint.register")],
    ),
    (
        "How do I safely send a file from a directory to the browser?",
        [("flask/helpers.py", "send_from_directory"), ("werkzeug/utils.py", "send_from_directory")],
    ),
    ("How do I return JSON from a view?", [("flask/json/__init__.py", "jsonify")]),
    (
        "How do I stream a response from a generator and still use the request context?",
        [("flask/helpers.py", "stream_with_context")],
    ),
    ("Show a one-time message to the user on the next page", [("flask/helpers.py", "flash")]),
    (
        "What turns an unhandled exception into a 500 Internal Server Error?",
        [("flask/app.py", "Flask.handle_exception")],
    ),
    ("Render a template given as a string instead of a file", [("flask/templating.py", "render_template_string")]),
    (
        "How are passwords hashed with a salt?",
        [("werkzeug/security.py", "generate_password_hash")],
    ),
    ("Check a password against a stored hash", [("werkzeug/security.py", "check_password_hash")]),
    (
        "How do I make an uploaded filename safe to store on disk?",
        [("werkzeug/utils.py", "secure_filename")],
    ),
    (
        "How do I redirect the client to another location?",
        [("werkzeug/utils.py", "redirect"), ("flask/helpers.py", "redirect")],
    ),
    ("How is the request path matched against the URL rules?", [("werkzeug/routing/map.py", "MapAdapter.match")]),
    (
        "How does the reloader notice that a source file was modified?",
        [("werkzeug/_reloader.py", "StatReloaderLoop"), ("werkzeug/_reloader.py", "StatReloaderLoop.run_step")],
    ),
    (
        "Where is multipart/form-data parsed into files and form fields?",
        [
            ("werkzeug/formparser.py", "MultiPartParser"),
            ("werkzeug/formparser.py", "MultiPartParser.parse"),
            ("werkzeug/formparser.py", "FormDataParser"),
            ("werkzeug/formparser.py", "parse_form_data"),
        ],
    ),
    (
        "Pick the best match from the client's Accept header",
        [("werkzeug/datastructures/accept.py", "Accept.best_match")],
    ),
    ("How is a Set-Cookie header value built?", [("werkzeug/http.py", "dump_cookie")]),
    ("Parse a date string from an HTTP header", [("werkzeug/http.py", "parse_date")]),
    (
        "How do I trust X-Forwarded-For headers set by a reverse proxy?",
        [("werkzeug/middleware/proxy_fix.py", "ProxyFix")],
    ),
    (
        "Turn on autoescaping based on the template file extension",
        [("jinja2/utils.py", "select_autoescape")],
    ),
    ("How does a loader find templates in folders on disk?", [("jinja2/loaders.py", "FileSystemLoader")]),
    ("Filter that shortens text to a maximum length", [("jinja2/filters.py", "do_truncate")]),
    (
        "How does the sandbox decide whether an attribute is safe to access?",
        [("jinja2/sandbox.py", "SandboxedEnvironment.is_safe_attribute")],
    ),
    (
        "How can I prompt for a password without echoing the input?",
        [("click/termui.py", "prompt")],
    ),
    ("How do I ask the user a yes/no question?", [("click/termui.py", "confirm")]),
    (
        "How do I display a progress bar while iterating?",
        [("click/termui.py", "progressbar"), ("click/_termui_impl.py", "ProgressBar")],
    ),
    (
        "Open the user's text editor to edit some text",
        [("click/termui.py", "edit"), ("click/_termui_impl.py", "Editor.edit")],
    ),
    (
        "How does an option read its value from an environment variable?",
        [("click/core.py", "Option.resolve_envvar_value"), ("click/core.py", "Parameter.resolve_envvar_value")],
    ),
    (
        "How is the age of a timestamped signature checked?",
        [("itsdangerous/timed.py", "TimestampSigner.unsign")],
    ),
    (
        "Verify a signature when unsigning a value",
        [("itsdangerous/signer.py", "Signer.unsign"), ("itsdangerous/signer.py", "Signer.verify_signature")],
    ),
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality")
    for name in PACKAGES:
        shutil.copytree(_package_dir(name), root / "pallets" / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_hit_at_3(corpus: Path) -> None:
    hits, misses = 0, []
    for question, expected in QUESTIONS:
        result = ask(corpus, "pallets", question, top_k=3)
        found = [(s["path"], s["symbol"]) for s in result["sources"]]
        if any(answer in found for answer in expected):
            hits += 1
        else:
            misses.append(f"{question!r}\n    expected {expected[0]}\n    got {found}")
    rate = hits / len(QUESTIONS)
    print(f"hit@3 = {hits}/{len(QUESTIONS)} = {rate:.2f}")
    for miss in misses:
        print("MISS", miss)
    assert len(QUESTIONS) >= 25
    assert rate >= 0.85, "\n".join(misses)
