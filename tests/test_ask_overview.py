"""Broad questions ("How does this code work?") get an overview of the workspace, with the places it was read from."""

from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.api.openapi import build_document
from app.ask import LLMSettings, ask
from app.ask.engine import NO_MATCH_ANSWER
from app.ask.overview.question import is_broad
from tests.conftest import ADMIN_KEY
from tests.fake_llm import ANSWER, FakeLLM

BROAD = "How does this code work?"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


PYTHON = {
    "README.md": (
        "# Shop\n\n[![CI](https://example.com/badge.svg)](https://example.com/ci)\n\n"
        "Shop keeps a small store's stock and orders, and serves them over a JSON API.\n\n"
        "## Install\n\n    pip install shop\n"
    ),
    "pyproject.toml": (
        '[project]\nname = "shop"\ndescription = "Stock and orders for small stores"\n\n'
        '[project.scripts]\nshop = "shop.cli:main"\n'
    ),
    "shop/__init__.py": (
        '"""Stock and orders for small stores."""\n\nfrom shop.app import create_app\n\n__all__ = ["create_app"]\n'
    ),
    "shop/cli.py": (
        '"""The shop command line."""\n\nimport sys\n\n\ndef main(argv=None):\n    """Run the shop command."""\n'
        "    return len(argv or sys.argv)\n"
    ),
    "shop/app.py": (
        '"""The web application: routes for stock and orders."""\n\n\ndef create_app(config=None):\n'
        '    """Build the app."""\n    return {"config": config}\n'
    ),
    "shop/__main__.py": "from shop.cli import main\n\nmain()\n",
    "tests/test_app.py": "def test_create_app():\n    assert True\n",
}

JAVASCRIPT = {
    "package.json": (
        '{\n  "name": "greeter",\n  "version": "1.0.0",\n  "description": "Greets people by name",\n'
        '  "main": "./lib/index.js",\n  "bin": {"greet": "bin/greet.js"}\n}\n'
    ),
    "Readme.md": "# greeter\n\nGreeter builds friendly greetings for people, in several languages.\n",
    "lib/index.js": (
        "/**\n * The greeter: builds greetings.\n */\n\nmodule.exports = createGreeter;\n\n"
        "function createGreeter(language) {\n  return function greet(name) {\n    return 'Hello ' + name;\n  };\n}\n"
    ),
    "lib/languages.js": "// Greetings in each language we know.\nexports.en = 'Hello';\nexports.fr = 'Bonjour';\n",
    "bin/greet.js": (
        "#!/usr/bin/env node\nconst greeter = require('../lib');\nconsole.log(greeter('en')(process.argv[2]));\n"
    ),
}

GO = {
    "go.mod": "module example.com/hello\n\ngo 1.21\n",
    "main.go": (
        "// Copyright 2024 The Hello Authors.\n\n// Command hello prints a greeting.\npackage main\n\n"
        'import (\n\t"fmt"\n\n\t"example.com/hello/greet"\n)\n\n'
        'func main() {\n\tfmt.Println(greet.Hello("world"))\n}\n'
    ),
    "greet/greet.go": (
        "// Package greet builds greetings.\npackage greet\n\n// Hello greets name.\n"
        'func Hello(name string) string {\n\treturn "Hello, " + name\n}\n'
    ),
    "greet/greet_test.go": 'package greet\n\nimport "testing"\n\nfunc TestHello(t *testing.T) {}\n',
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write(root / "shop", PYTHON)
    write(root / "greeter", JAVASCRIPT)
    write(root / "hello", GO)
    return root


def brief(sources: list[dict]) -> list[tuple]:
    return [(s["path"], s["start_line"], s["end_line"], s["symbol"], s["score"]) for s in sources]


def test_python_workspace_overview(root: Path) -> None:
    result = ask(root, "shop", BROAD)
    assert result["engine"] == "extractive"
    assert result["answer"] == (
        "What `shop` is, in its README.md: Shop keeps a small store's stock and orders, and serves them over a "
        "JSON API.\n\n"
        "The Python package `shop` (shop/__init__.py): Stock and orders for small stores. It offers `create_app`. "
        "Its modules: `app` (The web application: routes for stock and orders), `cli` (The shop command line).\n\n"
        "Where it starts: the command `shop` runs `main` in shop/cli.py (line 6); `python -m shop` runs "
        "shop/__main__.py; `create_app` in shop/app.py (line 4) builds the app.\n\n"
        "Top-level folders: shop/ (4 files), tests/ (1 file); 2 files at the top."
    )
    assert brief(result["sources"]) == [
        ("README.md", 1, 5, None, 1.0),
        ("shop/__init__.py", 1, 5, None, 0.5),
        ("shop/cli.py", 6, 8, "main", 0.3333),
        ("shop/__main__.py", 1, 3, None, 0.25),
        ("shop/app.py", 4, 6, "create_app", 0.2),
    ]
    cli = result["sources"][2]
    assert cli["snippet"] == 'def main(argv=None):\n    """Run the shop command."""\n    return len(argv or sys.argv)'
    assert set(cli) == {"path", "start_line", "end_line", "symbol", "snippet", "score", "callers", "callees"}
    assert (cli["callers"], cli["callees"]) == ([], [])


def test_javascript_workspace_overview(root: Path) -> None:
    result = ask(root, "greeter", "What does this project do?")
    assert result["answer"] == (
        "`greeter` — Greets people by name. Its Readme.md says: Greeter builds friendly greetings for people, in "
        "several languages.\n\n"
        "The folder lib/ holds 2 script files: index.js (The greeter: builds greetings), languages.js (Greetings "
        "in each language we know). The folder bin/ holds 1 script file: greet.js.\n\n"
        "Where it starts: the command `greet` runs bin/greet.js; the package's main file is lib/index.js; it "
        "exports `createGreeter`; `createGreeter` in lib/index.js (line 7) is what it exports.\n\n"
        "Top-level folders: lib/ (2 files), bin/ (1 file); 2 files at the top."
    )
    assert brief(result["sources"]) == [
        ("Readme.md", 1, 3, None, 1.0),
        ("lib/index.js", 1, 5, None, 0.5),
        ("bin/greet.js", 1, 3, None, 0.3333),
        ("lib/languages.js", 1, 3, None, 0.25),
        ("lib/index.js", 7, 11, "createGreeter", 0.2),
    ]


def test_go_workspace_overview(root: Path) -> None:
    result = ask(root, "hello", "Where do I start?")
    assert result["answer"] == (
        "`hello` has no README or description in this workspace; here is what its code says about itself.\n\n"
        "The Go package `main` (the top folder, `example.com/hello`): Command hello prints a greeting. "
        "The Go package `greet` (greet/, `example.com/hello/greet`): Package greet builds greetings. "
        "It offers functions `Hello`.\n\n"
        "Where it starts: `func main` in main.go (line 12).\n\n"
        "Top-level folders: greet/ (2 files); 2 files at the top."
    )
    assert brief(result["sources"]) == [
        ("main.go", 3, 10, None, 1.0),
        ("main.go", 12, 14, "main", 0.5),
        ("greet/greet.go", 1, 7, None, 0.3333),
        ("go.mod", 1, 3, None, 0.25),
    ]


def test_workspace_without_readme(root: Path) -> None:
    write(
        root / "bare",
        {
            "tool/__init__.py": '"""Small tools for text."""\n',
            "tool/words.py": "def count(s):\n    return len(s.split())\n",
        },
    )
    result = ask(root, "bare", "Give me an overview")
    assert result["answer"] == (
        "`bare` has no README or description in this workspace; here is what its code says about itself.\n\n"
        "The Python package `tool` (tool/__init__.py): Small tools for text. "
        "Its modules: `words` (defines `count`).\n\n"
        "It declares no command-line entry point, so it is used as a library: start reading at tool/__init__.py.\n\n"
        "Top-level folders: tool/ (2 files)."
    )
    assert brief(result["sources"]) == [("tool/__init__.py", 1, 1, None, 1.0), ("tool/words.py", 1, 2, None, 0.5)]


def test_workspace_of_plain_files(root: Path) -> None:
    write(root / "notes", {"todo.txt": "buy milk\n", "ideas/later.txt": "a garden\n"})
    result = ask(root, "notes", "What is this repo?")
    assert result["answer"] == (
        "`notes` has no README in this workspace.\n\n"
        "Its files, shallowest first: todo.txt, ideas/later.txt.\n\n"
        "Top-level folders: ideas/ (1 file); 1 file at the top."
    )
    assert brief(result["sources"]) == [("todo.txt", 1, 1, None, 1.0), ("ideas/later.txt", 1, 1, None, 0.5)]


def test_a_language_without_a_reader_shows_its_biggest_source_files(root: Path) -> None:
    main = "fn main() {\n" + "    step();\n" * 18 + "}\n"
    parser = "pub fn parse() {\n" + "    token();\n" * 38 + "}\n"
    files = {"Cargo.toml": '[package]\nname = "crab"\n', "src/main.rs": main, "src/parser.rs": parser}
    write(root / "crab", {**files, "notes/todo.md": "- write docs\n"})
    result = ask(root, "crab", "How does this code work?")
    assert result["answer"] == (
        "`crab` has no README in this workspace.\n\n"
        "Its biggest source files: src/parser.rs (40 lines), src/main.rs (20 lines).\n\n"
        "Top-level folders: src/ (2 files), notes/ (1 file); 1 file at the top."
    )
    assert brief(result["sources"]) == [("src/parser.rs", 1, 40, None, 1.0), ("src/main.rs", 1, 20, None, 0.5)]


def test_nonsense_still_says_nothing_matched(root: Path) -> None:
    for question in ("zebra quantum flux?", "How does the zebra quantum flux work in this code?"):
        result = ask(root, "shop", question)
        assert result["answer"] == NO_MATCH_ANSWER
        assert result["sources"] == []


def test_a_specific_question_is_still_ranked(root: Path) -> None:
    result = ask(root, "shop", "Which function runs the shop command?", top_k=1)
    assert brief(result["sources"]) == [("shop/cli.py", 6, 8, "main", result["sources"][0]["score"])]
    assert result["answer"].startswith("The most relevant code is `main` in shop/cli.py (lines 6–8)")


def test_a_question_naming_the_project_is_broad(root: Path) -> None:
    assert ask(root, "greeter", "How does greeter work?")["sources"][0]["path"] == "Readme.md"


def test_when_nothing_matched_a_question_about_the_project_gets_the_overview(root: Path) -> None:
    result = ask(root, "shop", "What is the zeitgeist of this repo?")
    assert result["sources"][0]["path"] == "README.md"


def test_top_k_limits_the_overview(root: Path) -> None:
    assert brief(ask(root, "shop", BROAD, top_k=2)["sources"]) == [
        ("README.md", 1, 5, None, 1.0),
        ("shop/__init__.py", 1, 5, None, 0.5),
    ]


def test_each_source_spans_at_most_150_lines(root: Path) -> None:
    constants = "".join(f"LIMIT_{i} = {i}\n" for i in range(70))
    body = "".join(f"    x{i} = {i}\n" for i in range(300))
    big = f'"""A big module."""\n{constants}\n\ndef main():\n{body}'
    write(root / "big", {"pyproject.toml": '[project.scripts]\nbig = "big:main"\n', "big.py": big})
    sources = ask(root, "big", BROAD, top_k=20)["sources"]
    assert [(s["path"], s["start_line"], s["end_line"], s["symbol"]) for s in sources] == [
        ("big.py", 1, 60, None),
        ("big.py", 74, 223, "main"),
        ("pyproject.toml", 1, 2, None),
    ]
    assert all(s["end_line"] - s["start_line"] < 150 for s in sources)
    main = next(s for s in sources if s["symbol"] == "main")
    assert main["snippet"].count("\n") == 149


@pytest.mark.parametrize(
    "question",
    [
        "How does this code work?",
        "What does this project do?",
        "Where do I start?",
        "Give me an overview",
        "What is this repo?",
        "How does it work?",
        "Explain the architecture of this codebase",
        "What's the entry point?",
        "How is the project organized?",
        "Which file should I read first?",
    ],
)
def test_broad_questions(question: str) -> None:
    assert is_broad(question)


@pytest.mark.parametrize(
    "question",
    [
        "How does routing work?",
        "Where is the session cookie set?",
        "What happens when a request times out?",
        "zebra quantum flux?",
        "How does this code parse dates?",
    ],
)
def test_specific_questions_are_not_broad(question: str) -> None:
    assert not is_broad(question)
    assert not is_broad(question, matched=False) or question == "How does this code parse dates?"


def test_the_api_answers_its_own_example_with_an_overview(client, workspaces: Path) -> None:
    write(workspaces / "demo", PYTHON)
    example = build_document()["components"]["schemas"]["AskRequest"]["examples"][0]
    assert example == {"workspaceId": "demo", "question": BROAD}
    response = client.post("/api/ask", json=example, headers={"x-api-key": ADMIN_KEY})
    assert response.status_code == 200
    body = response.get_json()
    assert body["question"] == BROAD
    assert body["answer"].startswith("What `shop` is, in its README.md: Shop keeps")
    assert brief(body["sources"])[:3] == [
        ("README.md", 1, 5, None, 1.0),
        ("shop/__init__.py", 1, 5, None, 0.5),
        ("shop/cli.py", 6, 8, "main", 0.3333),
    ]


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
_MANIFESTS = st.fixed_dictionaries(
    {},
    optional={
        "README.md": _TEXT,
        "README.rst": _TEXT,
        "pyproject.toml": st.one_of(_TEXT, st.just('[project]\nname = 1\nscripts = "x"\n')),
        "setup.cfg": st.one_of(_TEXT, st.just("[options.entry_points]\nconsole_scripts =\n  a = ..:\n")),
        "setup.py": _TEXT,
        "package.json": st.one_of(_TEXT, st.just('{"main": ["x"], "bin": 3}'), st.just('{"main": "../../etc"}')),
        "go.mod": _TEXT,
        "pkg/__init__.py": _TEXT,
        "pkg/__main__.py": _TEXT,
        "index.js": _TEXT,
        "main.go": _TEXT,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_MANIFESTS)
@example(files={"README.md": "0\x1e\x1e"})  # str.splitlines breaks at \x1e: the last line is empty, and kept
@example(files={"index.js": "x\n\x1e\n"})
def test_any_workspace_gets_an_overview_whose_sources_are_its_own_lines(tmp_path: Path, files: dict) -> None:
    root = tmp_path / f"ws{len(list(tmp_path.iterdir()))}"
    write(root / "w", {"notes.txt": "some notes\n", **files})
    result = ask(root, "w", BROAD, top_k=20)
    assert result["answer"] and result["sources"]
    for source in result["sources"]:
        lines = (root / "w" / source["path"]).read_bytes().decode("utf-8-sig").splitlines()
        assert 1 <= source["start_line"] <= source["end_line"] <= len(lines)
        assert source["end_line"] - source["start_line"] < 150
        assert source["snippet"] == "\n".join(lines[source["start_line"] - 1 : source["end_line"]])


def test_a_real_server_answers_the_documented_example_with_an_overview(live_server, workspaces: Path) -> None:
    write(workspaces / "demo", PYTHON)
    server = live_server()
    example = requests.get(server.url + "/api/openapi.json", timeout=10).json()["components"]["schemas"]
    body = example["AskRequest"]["examples"][0]
    response = requests.post(server.url + "/api/ask", json=body, headers={"x-api-key": ADMIN_KEY}, timeout=30)
    assert response.status_code == 200
    result = response.json()
    assert result["answer"].split("\n\n")[2] == (
        "Where it starts: the command `shop` runs `main` in shop/cli.py (line 6); `python -m shop` runs "
        "shop/__main__.py; `create_app` in shop/app.py (line 4) builds the app."
    )
    assert [source["path"] for source in result["sources"]] == [
        "README.md",
        "shop/__init__.py",
        "shop/cli.py",
        "shop/__main__.py",
        "shop/app.py",
    ]


def test_a_language_model_phrases_the_overview_from_its_sources(root: Path) -> None:
    with FakeLLM(model="m1", api_key=None) as llm:
        result = ask(root, "shop", BROAD, llm=LLMSettings(base_url=llm.base_url, model="m1", timeout=5))
    assert (result["engine"], result["answer"]) == ("llm", ANSWER)
    [body] = llm.requests
    prompt = body["messages"][1]["content"]
    assert "README.md lines 1-5" in prompt and "shop/cli.py lines 6-8" in prompt
    assert [source["path"] for source in result["sources"]][:3] == ["README.md", "shop/__init__.py", "shop/cli.py"]


def test_the_biggest_modules_of_the_main_package_come_next(root: Path) -> None:
    modules = {
        f"kit/{name}.py": f'"""The {name} module."""\n' + "x = 1\n" * size
        for name, size in [("a", 3), ("b", 9), ("c", 6)]
    }
    write(root / "kit", {"kit/__init__.py": '"""A kit."""\n', **modules})
    sources = ask(root, "kit", "Where do I start?")["sources"]
    assert [(s["path"], s["end_line"]) for s in sources] == [
        ("kit/__init__.py", 1),
        ("kit/b.py", 10),
        ("kit/c.py", 7),
        ("kit/a.py", 4),
    ]


def test_a_workspace_holding_one_project_folder_is_read_from_that_folder(root: Path) -> None:
    write(root / "wrapped", {f"shop-1.0/{name}": text for name, text in PYTHON.items()})
    result = ask(root, "wrapped", BROAD)
    first, second, *_ = result["answer"].split("\n\n")
    assert first == "(Everything is in shop-1.0/; paths below are inside it.)"
    assert second.startswith("What `shop` is, in its README.md: Shop keeps a small store's stock")
    assert brief(result["sources"]) == [
        ("shop-1.0/README.md", 1, 5, None, 1.0),
        ("shop-1.0/shop/__init__.py", 1, 5, None, 0.5),
        ("shop-1.0/shop/cli.py", 6, 8, "main", 0.3333),
        ("shop-1.0/shop/__main__.py", 1, 3, None, 0.25),
        ("shop-1.0/shop/app.py", 4, 6, "create_app", 0.2),
    ]
    lines = (root / "wrapped/shop-1.0/shop/cli.py").read_text().splitlines()
    assert result["sources"][2]["snippet"] == "\n".join(lines[5:8])
