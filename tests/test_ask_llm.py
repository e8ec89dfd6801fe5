"""The language-model engine: used when reachable, offline fallback otherwise, never leaking the key."""

import json
import logging
from pathlib import Path

import pytest

from app.ask import LLMSettings, ask

try:
    from fake_llm import ANSWER, FakeLLM
except ImportError:  # tests/ as a package
    from tests.fake_llm import ANSWER, FakeLLM

SECRET = "sk-test-SECRET-4f2a9c"
QUESTION = "How is the session cookie saved?"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "ws" / "demo"
    folder.mkdir(parents=True)
    (folder / "sessions.py").write_text(
        "class CookieSessions:\n"
        '    """A signed mapping."""\n\n'
        "    def save_session(self, response):\n"
        '        """Save the session cookie on the response."""\n'
        "        response.set_cookie('session', 'x')\n"
    )
    return tmp_path / "ws"


def _leaks(result: dict, caplog: pytest.LogCaptureFixture) -> bool:
    return SECRET in json.dumps(result) or SECRET in caplog.text


def test_llm_answer_is_used(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeLLM(model="m1", api_key=SECRET) as llm:
        settings = LLMSettings(base_url=llm.base_url, model="m1", api_key=SECRET, timeout=5)
        result = ask(root, "demo", QUESTION, llm=settings)
    assert result["engine"] == "llm"
    assert result["answer"] == ANSWER
    assert set(result) == {"workspaceId", "question", "answer", "sources", "engine"}
    assert result["sources"][0]["symbol"] == "CookieSessions.save_session"
    assert llm.rejections == []
    [body] = llm.requests
    assert body["model"] == "m1"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    prompt = body["messages"][1]["content"]
    assert QUESTION in prompt and "sessions.py lines 4-6" in prompt
    assert not _leaks(result, caplog)


def test_base_url_with_trailing_slash_and_no_key(root: Path) -> None:
    with FakeLLM(model="m1", api_key=None) as llm:
        settings = LLMSettings(base_url=llm.base_url + "/", model="m1")
        result = ask(root, "demo", QUESTION, llm=settings)
    assert result["engine"] == "llm"
    assert llm.rejections == []


def test_timeout_falls_back_to_extractive(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeLLM(model="m1", api_key=SECRET, mode="slow") as llm:
        settings = LLMSettings(base_url=llm.base_url, model="m1", api_key=SECRET, timeout=0.5)
        result = ask(root, "demo", QUESTION, llm=settings)
    assert result["engine"] == "extractive"
    assert result["answer"].startswith("The most relevant code is `CookieSessions.save_session`")
    assert f"(The language model at {llm.base_url} could not be used: timed out after 0.5 s." in result["answer"]
    assert "timed out" in caplog.text
    assert not _leaks(result, caplog)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("error", "it answered HTTP 500"), ("malformed", "its reply was not a valid chat completion")],
)
def test_server_errors_fall_back(root: Path, caplog: pytest.LogCaptureFixture, mode: str, reason: str) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeLLM(model="m1", api_key=SECRET, mode=mode) as llm:
        settings = LLMSettings(base_url=llm.base_url, model="m1", api_key=SECRET, timeout=5)
        result = ask(root, "demo", QUESTION, llm=settings)
    assert result["engine"] == "extractive"
    assert reason in result["answer"]
    assert len(llm.requests) == 1  # the request itself was well-formed
    assert not _leaks(result, caplog)


def test_wrong_key_is_a_fallback_not_a_leak(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeLLM(model="m1", api_key="the-right-key") as llm:
        settings = LLMSettings(base_url=llm.base_url, model="m1", api_key=SECRET, timeout=5)
        result = ask(root, "demo", QUESTION, llm=settings)
    assert result["engine"] == "extractive"
    assert "it answered HTTP 401" in result["answer"]
    assert not _leaks(result, caplog)


def test_unreachable_server_falls_back(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with FakeLLM() as llm:
        base_url = llm.base_url  # the port is free again once the server is gone
    settings = LLMSettings(base_url=base_url, model="m1", api_key=SECRET, timeout=2)
    result = ask(root, "demo", QUESTION, llm=settings)
    assert result["engine"] == "extractive"
    assert "connection failed" in result["answer"]
    assert not _leaks(result, caplog)


def test_credentials_in_base_url_are_not_shown(root: Path) -> None:
    with FakeLLM(mode="error") as llm:
        url = llm.base_url.replace("http://", f"http://user:{SECRET}@")
        result = ask(root, "demo", QUESTION, llm=LLMSettings(base_url=url, model="fake-model", timeout=5))
    assert result["engine"] == "extractive"
    assert SECRET not in result["answer"]


def test_disabled_or_no_sources_skip_the_model(root: Path) -> None:
    assert not LLMSettings(base_url="http://127.0.0.1:9/v1", model=None).enabled
    assert not LLMSettings(base_url=None, model="m").enabled
    with FakeLLM(model="m1") as llm:
        settings = LLMSettings(base_url=llm.base_url, model="m1")
        assert ask(root, "demo", QUESTION, llm=LLMSettings(model="m1"))["engine"] == "extractive"
        nothing = ask(root, "demo", "zzzz qqqq", llm=settings)
    assert nothing["engine"] == "extractive" and nothing["sources"] == []
    assert llm.requests == []


def test_settings_repr_hides_the_key() -> None:
    settings = LLMSettings(base_url="http://x/v1", model="m", api_key=SECRET)
    assert SECRET not in repr(settings)
