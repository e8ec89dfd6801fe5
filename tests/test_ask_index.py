"""The index: what is indexed, how code is chunked and tokenised, and incremental updates."""

import os
import sqlite3
from pathlib import Path

import pytest

from app.ask import search, update_index
from app.ask.chunking import MAX_LINES, chunk_file
from app.ask.indexdb import index_db_path
from app.ask.tokens import query_terms, stem, text_terms


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws" / "demo"
    _write(ws / "app" / "models.py", 'def load_user(user_id):\n    """Fetch one user."""\n    return user_id\n')
    _write(ws / "app" / "views.py", "def index():\n    return 'hello'\n")
    _write(ws / "web" / "main.js", "function getSignature(req) {\n  return req.headers.sig;\n}\n")
    _write(ws / "README.md", "# Demo\n\nHow to run the demo.\n")
    return tmp_path / "ws"


def _touch_later(path: Path) -> None:
    # Same size, new mtime: guaranteed different even on coarse-grained filesystems.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_incremental_updates_read_only_what_changed(root: Path) -> None:
    first = update_index(root, "demo")
    assert sorted(first.read_paths) == ["README.md", "app/models.py", "app/views.py", "web/main.js"]
    assert first.files_seen == first.files_read == 4 and first.chunks > 0

    unchanged = update_index(root, "demo")
    assert unchanged.read_paths == [] and unchanged.files_read == 0
    assert unchanged.files_seen == 4 and unchanged.chunks == first.chunks

    _touch_later(root / "demo" / "app" / "views.py")
    (root / "demo" / "app" / "models.py").write_text("def fetch_account():\n    return 1\n")
    changed = update_index(root, "demo")
    assert sorted(changed.read_paths) == ["app/models.py", "app/views.py"]
    assert [s.symbol for s in search(root, "demo", "fetch account", 1)] == ["fetch_account"]
    assert search(root, "demo", "load_user", 5) == []

    (root / "demo" / "web" / "main.js").unlink()
    removed = update_index(root, "demo")
    assert removed.read_paths == [] and removed.removed_paths == ["web/main.js"] and removed.files_removed == 1
    assert search(root, "demo", "getSignature", 5) == []

    _write(root / "demo" / "web" / "new.py", "def brand_new():\n    pass\n")
    added = update_index(root, "demo")
    assert added.read_paths == ["web/new.py"]


def test_skipped_files_and_folders(root: Path) -> None:
    ws = root / "demo"
    _write(ws / ".git" / "config", "[core]\n    repositoryformatversion = 0\n")
    _write(ws / "node_modules" / "lib" / "index.js", "function hidden() {}\n")
    _write(ws / ".venv" / "lib" / "x.py", "def hidden(): pass\n")
    _write(ws / "env2" / "pyvenv.cfg", "home = /usr/bin\n")
    _write(ws / "env2" / "lib" / "y.py", "def hidden(): pass\n")
    _write(ws / "app" / "__pycache__" / "models.cpython-311.pyc", b"\0\0binary")
    _write(ws / "static" / "app.min.js", "function hidden(){}\n")
    _write(ws / "vendor" / "lib.js", "function hidden(){}\n")
    _write(ws / "static" / "bundle.js", "var hidden=1;" * 2000 + "\n")  # minified: one huge line
    _write(ws / "data.dat", b"text\0with nul")
    _write(ws / "latin1.txt", "caf\xe9".encode("latin-1"))
    _write(ws / "big.txt", "hidden line\n" * 100_000)  # over 1 MB
    _write(ws / "empty.py", "")
    os.symlink("/etc/hostname", ws / "link.txt")
    stats = update_index(root, "demo")
    assert sorted(stats.read_paths) == [
        "README.md",
        "app/models.py",
        "app/views.py",
        "data.dat",
        "latin1.txt",
        "static/bundle.js",
        "web/main.js",
    ]
    assert search(root, "demo", "hidden", 10) == []
    # Binary and rejected files are remembered, so the next update reads nothing at all.
    assert update_index(root, "demo").read_paths == []


def test_python_chunks_follow_structure() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(300))
    big = "".join(f"        y{i} = {i}\n" for i in range(120))
    source = (
        '"""Module doc."""\n'
        "import os\n\n\n"
        "# Why this decorator matters.\n"
        "@decorator\n"
        "def top(a):\n"
        '    """Top-level function."""\n'
        "    return a\n\n\n"
        "class Outer(Base):\n"
        '    """Outer doc."""\n\n'
        "    limit = 3\n\n"
        "    def method(self):\n"
        '        """Method doc."""\n'
        "        return 1\n\n"
        "    class Inner:\n"
        "        def deep(self):\n"
        "            pass\n\n"
        "    after = 4\n\n"
        f"    def big(self):\n{big}\n\n"
        "class Small:\n"
        '    """A small class."""\n\n'
        "    def one(self):\n"
        "        return 1\n\n\n"
        f"def long_function():\n{body}"
    )
    chunks = chunk_file("pkg/mod.py", source)
    by_symbol = {}
    for chunk in chunks:
        by_symbol.setdefault(chunk.symbol, []).append(chunk)
    assert by_symbol[None][0].start_line == 1 and by_symbol[None][0].doc == "Module doc."
    [top] = by_symbol["top"]
    assert (top.start_line, top.end_line, top.doc) == (5, 9, "Top-level function.")
    assert top.text.startswith("# Why this decorator matters.\n@decorator\ndef top(a):")
    outer = by_symbol["Outer"]
    assert (outer[0].start_line, outer[0].end_line, outer[0].doc) == (12, 15, "Outer doc.")
    assert "method" in outer[0].extra_terms and "Inner" in outer[0].extra_terms
    assert any("after = 4" in chunk.text for chunk in outer[1:])
    assert by_symbol["Outer.method"][0].doc == "Method doc."
    assert by_symbol["Outer.Inner.deep"][0].start_line == 22
    assert [(c.start_line, c.end_line) for c in by_symbol["Outer.big"]] == [(27, 87), (88, 147)]
    assert [(c.start_line, c.end_line, c.doc) for c in by_symbol["Small"]] == [(150, 151, "A small class.")]
    assert [(c.start_line, c.end_line) for c in by_symbol["Small.one"]] == [(153, 154)]
    pieces = by_symbol["long_function"]
    assert len(pieces) == 3
    assert all(p.end_line - p.start_line + 1 <= MAX_LINES for p in chunks)
    assert pieces[0].start_line == 157 and pieces[-1].end_line == 457
    assert all(b.start_line == a.end_line + 1 for a, b in zip(pieces, pieces[1:], strict=False))


def test_other_languages_use_windows_cut_at_declarations() -> None:
    lines = [f"// line {i}" for i in range(1, 46)] + ["fn second(a: u32) {"] + ["  a += 1;"] * 80 + ["}"]
    chunks = chunk_file("src/app.rs", "\n".join(lines))
    assert chunks[0].start_line == 1 and chunks[0].end_line == 45
    assert chunks[1].start_line == 46 and chunks[1].symbol == "second"
    assert chunks[0].doc == "line 1"
    assert all(c.end_line - c.start_line + 1 <= MAX_LINES for c in chunks)
    # Plain windows overlap so that nothing straddling a boundary is lost.
    assert chunks[2].start_line <= chunks[1].end_line


def test_broken_python_falls_back_to_windows() -> None:
    chunks = chunk_file("bad.py", "def broken(:\n    pass\n")
    assert [(c.start_line, c.end_line, c.symbol) for c in chunks] == [(1, 2, "broken")]


def test_identifiers_are_split_and_stemmed() -> None:
    terms = set(text_terms("getSignature get_signature flask.sessions HTTPServer"))
    assert {"getsignatur", "get", "signatur", "flask", "session", "http", "server"} <= terms
    assert stem("saved") == stem("save") == stem("saves") == stem("saving") == "save"
    assert stem("cookies") == stem("cookie") == "cooki"
    # Snowball joins a verb with its -ation and -ize forms; irregular verbs and short words are kept apart.
    assert stem("serialization") == stem("serialize") == stem("serializing") == "serial"
    assert stem("built") == "build"
    assert stem("was") == "was"
    assert stem("utf8") == "utf8"
    # Only spelling variants of one word expand; related words (save/store/persist) do not.
    assert query_terms("How does the signature get saved?") == ["signatur", "sig", "get", "save"]
    assert query_terms("the environment") == ["environ"]
    # Groups meet by stem: no member may stem to an everyday word ("settings" -> "set").
    assert query_terms("set a map of the author") == ["set", "map", "author"]
    assert query_terms("configuration") == ["configur", "config"]


def test_code_aware_matching(root: Path) -> None:
    ws = root / "demo"
    _write(ws / "flask" / "sessions.py", "class SessionStore:\n    def save_session(self):\n        pass\n")
    update_index(root, "demo")
    assert search(root, "demo", "signature", 3)[0].symbol == "getSignature"
    assert search(root, "demo", "get_signature", 3)[0].symbol == "getSignature"
    assert search(root, "demo", "sessions saved", 1)[0].symbol == "SessionStore.save_session"
    assert search(root, "demo", "flask.sessions", 1)[0].path == "flask/sessions.py"


def test_index_lives_beside_the_workspaces(root: Path) -> None:
    update_index(root, "demo")
    db = index_db_path(root, "demo")
    assert db == root / ".index" / "demo.sqlite3"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert not list((root / "demo").rglob("*.sqlite3"))


def test_progress_callback(root: Path) -> None:
    calls = []
    update_index(root, "demo", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_changed_and_removed_files_leave_nothing_behind_in_the_contentless_index(root: Path) -> None:
    ws = root / "demo"
    _write(ws / "pkg" / "animals.py", 'def zebra_stripes():\n    """Count the stripes."""\n    return 7\n')
    update_index(root, "demo")
    assert [s.symbol for s in search(root, "demo", "zebra stripes", 5)] == ["zebra_stripes"]

    _write(ws / "pkg" / "animals.py", 'def okapi_spots():\n    """Count the spots."""\n    return 3\n')
    os.utime(ws / "pkg" / "animals.py", ns=(1, 1))  # a new mtime even on coarse clocks
    update_index(root, "demo")
    assert search(root, "demo", "zebra stripes", 5) == []
    [okapi] = search(root, "demo", "okapi spots", 5)
    assert (okapi.symbol, okapi.doc, okapi.snippet) == (
        "okapi_spots",
        "Count the spots.",
        'def okapi_spots():\n    """Count the spots."""\n    return 3',
    )

    (ws / "pkg" / "animals.py").unlink()
    update_index(root, "demo")
    assert search(root, "demo", "okapi spots", 5) == []
    conn = sqlite3.connect(index_db_path(root, "demo"))
    # The FTS5 table keeps no copy of the terms; its vocabulary has no trace of the deleted chunks.
    assert conn.execute("SELECT count(*) FROM chunk_vocab WHERE term IN ('zebra', 'okapi')").fetchone()[0] == 0
    conn.close()


def test_code_outranks_translation_catalogues_and_dot_files(root: Path) -> None:
    ws = root / "i18n"
    catalogue = 'msgid "Load the translation file for a language"\nmsgstr "Charger"\n\n' * 3
    _write(ws / "pkg" / "locale" / "fr" / "messages.po", catalogue)
    _write(ws / "pkg" / "locale" / "messages.pot", catalogue)
    _write(ws / ".editorconfig", "[*.py]\nlanguage = python\ntranslation_file = none\nload = 1\n")
    code = "def activate(lang):\n    " + "\n    ".join(f"step{i}(lang)" for i in range(10)) + "\n"
    _write(ws / "pkg" / "i18n.py", code + "    return load_translation(lang)\n")
    for number in range(12):  # unrelated code, so that the question's words are rare enough to count
        _write(ws / "pkg" / f"other{number}.py", f"def other{number}():\n    return {number}\n")
    update_index(root, "i18n")
    ranked = search(root, "i18n", "Where does it load the translation file for a language?", 4)
    assert [source.path for source in ranked] == [
        "pkg/i18n.py",
        "pkg/locale/messages.pot",
        "pkg/locale/fr/messages.po",
        ".editorconfig",
    ]


def test_guides_outrank_changelogs_licences_and_release_notes(root: Path) -> None:
    ws = root / "records"
    prose = "Load the translation file for a language before the first request.\n" * 3
    for name in ("CHANGELOG.md", "LICENSE", "releasenotes/notes/add-translations.yaml", "docs/guide.md"):
        _write(ws / name, prose)
    for number in range(12):  # unrelated code, so that the question's words are rare enough to count
        _write(ws / "pkg" / f"other{number}.py", f"def other{number}():\n    return {number}\n")
    update_index(root, "records")
    ranked = search(root, "records", "Where does it load the translation file for a language?", 4)
    assert ranked[0].path == "docs/guide.md"
    assert {source.path for source in ranked[1:]} == {
        "CHANGELOG.md",
        "LICENSE",
        "releasenotes/notes/add-translations.yaml",
    }


def test_source_outranks_its_built_copy(root: Path) -> None:
    # npm packages often ship their sources and a bundle of them in dist/: the same text twice.
    ws = root / "built"
    code = "function loadTranslation(lang) {\n" + "".join(f"  step{i}(lang)\n" for i in range(30)) + "}\n"
    _write(ws / "lib" / "i18n.js", code)
    _write(ws / "dist" / "bundle.js", code)
    for number in range(12):  # unrelated code, so that the question's words are rare enough to count
        _write(ws / "lib" / f"other{number}.js", f"function other{number}() {{\n  return {number}\n}}\n")
    update_index(root, "built")
    ranked = search(root, "built", "Where does it load the translation for a language?", 2)
    assert [source.path for source in ranked] == ["lib/i18n.js", "dist/bundle.js"]
