"""The ask-quality question set (bench/quality) is well formed and fair, and its grading rule is exact.

Offline: nothing is downloaded; bench/quality.py does that when it runs.
"""

import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("quality", ROOT / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)

FILES = sorted((ROOT / "bench" / "quality").glob("*/*.json"))
# Transitive dependencies of requirements*.txt named in bench/quality's format notes, in case the venv
# lacks one; the venv's own metadata adds whatever else the pinned packages pull in.
KNOWN_TRANSITIVE = {
    "flask", "werkzeug", "jinja2", "itsdangerous", "click", "blinker", "markupsafe", "packaging",
    "python-dotenv", "redis", "pygments", "requests", "urllib3", "idna", "certifi", "charset-normalizer",
    "playwright", "greenlet", "ruff", "schemathesis", "anyio", "rich", "markdown-it-py", "mdurl", "pyyaml",
    "sortedcontainers", "wrapt", "deprecated", "ordered-set", "typing-extensions", "graphql-core", "harfile",
    "pyrate-limiter", "iniconfig", "pluggy", "py-cpuinfo", "hypothesis", "limits", "gunicorn", "wtforms",
}  # fmt: skip
EXCLUDED_PREFIXES = ("flask-", "pytest", "jsonschema", "tree-sitter")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_dependencies() -> set[str]:
    """Normalized names of every package requirements*.txt installs, directly or transitively."""
    names = set(KNOWN_TRANSITIVE)
    for req_file in ROOT.glob("requirements*.txt"):
        for line in req_file.read_text().splitlines():
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if match and not line.lstrip().startswith(("#", "-")):
                names.add(_normalize(match.group(1)))
    todo = list(names)
    while todo:
        try:
            requires = importlib.metadata.distribution(todo.pop()).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            name = _normalize(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
            if name not in names:
                names.add(name)
                todo.append(name)
    return names


def _codebases() -> list:
    return quality.load_codebases()


@pytest.mark.parametrize("file", FILES, ids=[f"{f.parent.name}/{f.name}" for f in FILES])
def test_question_file_is_valid(file):
    quality.validate(json.loads(file.read_text(encoding="utf-8")), file, file.parent.name)


def test_question_files_live_in_a_split():
    stray = [
        p.relative_to(ROOT)
        for p in (ROOT / "bench" / "quality").rglob("*.json")
        if p.parent.name not in ("dev", "test")
    ]
    assert stray == []


def test_enough_codebases_questions_and_languages():
    codebases = _codebases()
    assert len(codebases) >= 12
    assert sum(len(c.questions) for c in codebases) >= 120
    assert len([c for c in codebases if c.language.lower() != "python"]) >= 3
    assert {c.split for c in codebases} == {"dev", "test"}


def test_dev_and_test_codebases_are_disjoint():
    codebases = _codebases()
    names = [c.name for c in codebases]
    assert len(names) == len(set(names)), "a codebase has two question files"
    sources = [(c.source["kind"], _normalize(c.source["name"])) for c in codebases]
    assert len(sources) == len(set(sources)), "two codebases fetch the same package"


def test_no_codebase_is_one_of_the_projects_own_dependencies():
    excluded = project_dependencies()
    assert {"flask", "werkzeug", "jinja2", "click", "pyyaml"} <= excluded
    reserved = [
        f"{c.split}/{c.name}"
        for c in _codebases()
        for name in {_normalize(c.name), _normalize(c.source["name"])}
        if name in excluded or name.startswith(EXCLUDED_PREFIXES)
    ]
    assert reserved == []


def test_questions_do_not_give_away_the_answers_names():
    leaks = []
    for codebase in _codebases():
        for item in codebase.questions:
            if names := quality.leaked_names(item["question"], item["expect"]):
                leaks.append(f"{codebase.split}/{codebase.name}: {item['question']!r} names {', '.join(names)}")
    assert leaks == []


def test_expected_entries_match_the_cached_sources():
    """Line numbers against the real code, for the codebases bench/quality.py has already fetched."""
    checked, problems = 0, []
    for codebase in _codebases():
        folder = quality.cache_path(quality.DEFAULT_CACHE, codebase.source)
        if folder.is_dir():
            checked += 1
            problems += quality.sanity_problems(codebase, folder)
    if not checked:
        pytest.skip(f"no source in {quality.DEFAULT_CACHE} yet: run make quality once")
    assert problems == []


# --- the validator and the grading rule, on hand-made inputs ---------------------------------------

EXPECT = [{"path": "pkg/mod.py", "symbol": "Thing.run", "lines": [100, 140]}]


def _source(path="pkg/mod.py", start=90, end=110):
    return {"path": path, "start_line": start, "end_line": end, "symbol": None}


def test_leaked_names_are_whole_name_parts_of_four_or_more_chars():
    expect = [
        {"path": "a.py", "symbol": "Arrow.shift", "lines": [1, 2]},
        {"path": "a.py", "symbol": "app.use", "lines": [1, 2]},
    ]
    assert quality.leaked_names("How does it shift an arrow?", expect) == ["Arrow", "shift"]
    assert quality.leaked_names("How do I use the app when shifting?", expect) == []


def test_hit_needs_same_path_and_overlap():
    assert quality.is_hit(_source(start=90, end=100), EXPECT)
    assert quality.is_hit(_source(start=140, end=150), EXPECT)
    assert not quality.is_hit(_source(start=141, end=160), EXPECT)
    assert not quality.is_hit(_source(start=50, end=99), EXPECT)
    assert not quality.is_hit(_source(path="pkg/other.py"), EXPECT)


def test_hit_allows_at_most_150_lines():
    assert quality.is_hit(_source(start=1, end=150), EXPECT)
    assert not quality.is_hit(_source(start=1, end=151), EXPECT)


def test_any_expected_entry_counts():
    expect = [*EXPECT, {"path": "pkg/b.py", "symbol": "helper", "lines": [5, 9]}]
    assert quality.is_hit(_source(path="pkg/b.py", start=9, end=30), expect)


def test_first_hit_rank_and_scores():
    miss, hit = _source(path="x.py"), _source()
    assert quality.first_hit_rank([miss, miss, hit, hit], EXPECT) == 3
    assert quality.first_hit_rank([miss] * 5 + [hit], EXPECT) is None  # only the top 5 count
    assert quality.first_hit_rank([], EXPECT) is None
    hit3, mrr = quality.scores([1, 2, 4, None])
    assert hit3 == 0.5
    assert mrr == pytest.approx((1 + 1 / 2 + 1 / 4 + 0) / 4)
    assert quality.scores([]) == (0.0, 0.0)


def _valid_data(**changes):
    question = {"question": "How does it work?", "expect": EXPECT}
    data = {
        "codebase": "demo",
        "language": "python",
        "source": {"kind": "pypi", "name": "demo", "version": "1.0"},
        "questions": [dict(question, question=f"Question {n}?") for n in range(9)],
    }
    data.update(changes)
    return data


def test_validator_accepts_a_good_file():
    codebase = quality.validate(_valid_data(), Path("/x/dev/demo.json"), "dev")
    assert (codebase.name, codebase.split, len(codebase.questions)) == ("demo", "dev", 9)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"codebase": "other"}, "/x/dev/demo.json: codebase 'other' must equal the file name 'demo'"),
        ({"source": {"kind": "cargo", "name": "d", "version": "1"}}, "source: kind must be pypi, npm or debian"),
        ({"source": {"kind": "debian", "name": "d", "version": "1"}}, "source: missing subdir"),
        ({"questions": []}, "has 0 questions, needs 9 to 10"),
        ({"extra": 1}, "unknown key extra"),
    ],
)
def test_validator_names_the_file_and_the_problem(changes, message):
    with pytest.raises(quality.BadQuestionFile) as raised:
        quality.validate(_valid_data(**changes), Path("/x/dev/demo.json"), "dev")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "a.py", "symbol": "f", "lines": [10, 9]}, "question 4, expect 1: lines [10, 9] must satisfy"),
        ({"path": "a.py", "symbol": "f", "lines": [10]}, "question 4, expect 1: lines must be [first, last]"),
        ({"path": "../a.py", "symbol": "f", "lines": [1, 2]}, "question 4, expect 1: path '../a.py' must be relative"),
        ({"path": "a.py", "symbol": "", "lines": [1, 2]}, "question 4, expect 1: symbol must be a non-empty string"),
        ({"path": "a.py", "symbol": "f", "line": [1, 2]}, "question 4, expect 1: missing lines"),
    ],
)
def test_validator_names_the_question_of_a_bad_entry(entry, message):
    data = _valid_data()
    data["questions"][3]["expect"] = [entry]
    with pytest.raises(quality.BadQuestionFile) as raised:
        quality.validate(data, Path("/x/dev/demo.json"), "dev")
    assert message in str(raised.value)


def test_sanity_check_catches_wrong_line_numbers(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("\n" * 99 + "class Thing:\n    def run(self):\n        pass\n")
    good = {"path": "pkg/mod.py", "symbol": "Thing.run", "lines": [101, 102]}
    data = _valid_data()
    for item in data["questions"]:
        item["expect"] = [good]
    data["questions"][0]["expect"] = [dict(good, lines=[50, 60])]
    data["questions"][1]["expect"] = [dict(good, path="pkg/gone.py")]
    data["questions"][2]["expect"] = [dict(good, lines=[101, 200])]
    problems = quality.sanity_problems(quality.validate(data, Path("/x/dev/demo.json"), "dev"), tmp_path)
    assert problems == [
        "dev/demo.json: question 1: pkg/mod.py: 'run' is not on the first lines of 50-60",
        "dev/demo.json: question 2: pkg/gone.py: no such file in demo 1.0",
        "dev/demo.json: question 3: pkg/mod.py: lines 101-200 run past the end (102 lines)",
    ]
