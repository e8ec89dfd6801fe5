"""ask(): the fixed result shape, the extractive answer, and every way a request can be wrong."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ask import (
    EmptyWorkspace,
    InvalidQuestion,
    WorkspaceNotFound,
    ask,
    search,
)
from app.ask.engine import NO_MATCH_ANSWER

CODE = '''"""Helpers for signing values."""


def sign_value(value, key):
    """Return value with an HMAC signature appended."""
    return value + "." + _mac(value, key)


class Unsigner:
    """Checks signatures made by sign_value."""

    def unsign(self, signed):
        """Split off the signature and verify it."""
        value, _, mac = signed.rpartition(".")
        return value
'''


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "ws" / "demo"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "signing.py").write_text(CODE)
    (folder / "README.md").write_text("# Demo\n\nA tiny package that signs values.\n")
    return tmp_path / "ws"


def test_result_shape_and_extractive_answer(root: Path) -> None:
    result = ask(root, "demo", "  How do I verify a signature?  ", top_k=2)
    assert set(result) == {"workspaceId", "question", "answer", "sources", "engine"}
    assert result["workspaceId"] == "demo"
    assert result["question"] == "How do I verify a signature?"
    assert result["engine"] == "extractive"
    assert len(result["sources"]) == 2
    top = result["sources"][0]
    assert set(top) == {"path", "start_line", "end_line", "symbol", "snippet", "score", "callers", "callees"}
    assert top == {
        "path": "pkg/signing.py",
        "start_line": 12,
        "end_line": 15,
        "symbol": "Unsigner.unsign",
        "snippet": top["snippet"],
        "score": top["score"],
        "callers": [],
        "callees": [],
    }
    assert top["snippet"].startswith("    def unsign(self, signed):")
    assert isinstance(top["score"], float) and top["score"] > result["sources"][1]["score"]
    assert result["answer"].startswith(
        "The most relevant code is `Unsigner.unsign` in pkg/signing.py (lines 12–15): "
        "Split off the signature and verify it. Also see "
    )


def test_nothing_matched_is_an_answer_not_an_error(root: Path) -> None:
    result = ask(root, "demo", "zebra quantum flux?")
    assert result["sources"] == []
    assert result["answer"] == NO_MATCH_ANSWER
    assert result["engine"] == "extractive"


@pytest.mark.parametrize("workspace_id", ["missing", "../demo", ".index", "", "a" * 65, "x/y", None])
def test_unknown_or_invalid_workspace(root: Path, workspace_id: object) -> None:
    with pytest.raises(WorkspaceNotFound, match="Workspace not found"):
        ask(root, workspace_id, "anything")


def test_empty_workspace(root: Path) -> None:
    empty = root / "empty"
    empty.mkdir()
    (empty / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    (empty / "data.bin").write_bytes(b"abc\0def")
    with pytest.raises(EmptyWorkspace, match="no indexable text files"):
        ask(root, "empty", "anything")


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "must not be empty"),
        ("   \n\t ", "must not be empty"),
        ("x" * 2001, "at most 2000 characters"),
        (None, "must be a string"),
        (42, "must be a string"),
    ],
)
def test_invalid_question(root: Path, question: object, message: str) -> None:
    with pytest.raises(InvalidQuestion, match=message):
        ask(root, "demo", question)


def test_length_is_checked_after_stripping(root: Path) -> None:
    assert ask(root, "demo", "sign" + "x" * 1995 + "     ")["question"] == "sign" + "x" * 1995
    with pytest.raises(InvalidQuestion, match="at most 2000 characters"):
        ask(root, "demo", "x" * 2001 + "     ")


def test_longest_question_is_fine(root: Path) -> None:
    assert ask(root, "demo", " " + "sign " * 400 + " ")["sources"]


@pytest.mark.parametrize("top_k", [0, 21, -1, "5", True, False, 2.5, None, 5.0])
def test_invalid_top_k(root: Path, top_k: object) -> None:
    with pytest.raises(InvalidQuestion, match="top_k must be an integer from 1 to 20"):
        ask(root, "demo", "sign", top_k=top_k)


@pytest.mark.parametrize("top_k", [1, 20])
def test_top_k_bounds(root: Path, top_k: int) -> None:
    assert 1 <= len(ask(root, "demo", "sign value signature", top_k=top_k)["sources"]) <= top_k


@pytest.mark.parametrize(
    "question",
    [
        '"',
        '""sign""',
        "*",
        "sign*",
        "NEAR(",
        "NEAR(sign value, 2)",
        "-",
        "-sign",
        ")",
        "(sign OR",
        "sign AND NOT value",
        "sign\x00value",
        "\x00",
        "🔏 sign 🎉",
        "🎉",
        "signature: {col}",
        "^sign",
        "sign + value",
        "'; DROP TABLE chunks; --",
        "ſign ﬁle ǅ",
    ],
)
def test_fts_hostile_questions(root: Path, question: str) -> None:
    result = ask(root, "demo", question)
    assert isinstance(result["answer"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_text_is_safe(root: Path, text: str) -> None:
    try:
        result = ask(root, "demo", text)
    except InvalidQuestion:
        assert not text.strip()
    else:
        assert result["question"] == text.strip()
    assert isinstance(search(root, "demo", text, 3), list)
