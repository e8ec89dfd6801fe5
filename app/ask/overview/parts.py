"""What the overview is made of: a ``Part`` (a sentence and the lines it was read from) and shared helpers."""

import re
from collections import Counter
from dataclasses import dataclass, field

MAX_LISTED = 10  # modules or files named per package in the answer
MAX_SNIPPET = 60  # lines shown of a file whose whole head is the point (a package's __init__, a main file)
NOT_CODE_DIRS = frozenset(
    {"test", "tests", "testing", "doc", "docs", "example", "examples", "bench", "benchmarks", "scripts", "tools"}
)
LICENSE_RE = re.compile(r"copyright|licen[cs]e|\(c\)", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """One finding: ``text`` goes into the answer; ``path`` lines ``start_line``-``end_line`` are its source."""

    path: str
    start_line: int
    end_line: int
    symbol: str | None
    text: str
    snippet: str
    doc: str | None = None

    @property
    def where(self) -> str:
        if self.symbol:
            return f"`{self.symbol}` in {self.path}"
        return self.path


@dataclass
class Facts:
    """What the top-level manifests declare."""

    name: str | None = None
    description: str | None = None
    scripts: list[tuple[str, str]] = field(default_factory=list)  # (command, "module:function")
    js_main: str | None = None
    js_bin: list[tuple[str, str]] = field(default_factory=list)  # (command, file)
    go_module: str | None = None
    parts: list[Part] = field(default_factory=list)


@dataclass
class Found:
    """What one language's reader found: the main packages, where the code starts, and notable modules."""

    layout: list[Part] = field(default_factory=list)
    entries: list[Part] = field(default_factory=list)
    modules: list[Part] = field(default_factory=list)


def line_span(text: str, start: int, end: int) -> str:
    return "\n".join(text.splitlines()[start - 1 : end])


def head_part(path: str, text: str, symbol: str | None = None, limit: int = MAX_SNIPPET) -> Part:
    end = max(1, min(len(text.splitlines()), limit))
    return Part(path, 1, end, symbol, path, line_span(text, 1, end))


_RST_ROLE = re.compile(r":[\w:.-]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")
_RST_LITERAL = re.compile(r"``(.+?)``")
_TITLE = re.compile(r"\A\s*[^\n]*\n[ \t]*([=\-~*^#+])\1{2,}[ \t]*(?:\n|\Z)")


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of a docstring or comment, reStructuredText roles reduced to plain `code`."""
    text = _TITLE.sub("", text)  # "pygments.lexer\n~~~~~~~~~~~~~~\n\nBase lexer classes." starts at "Base"
    text = _RST_LITERAL.sub(r"`\1`", _RST_ROLE.sub(r"`\1`", " ".join(text.split())))
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    sentence = match.group(1) if match else text
    if len(sentence) > limit:
        sentence = sentence[: limit - 1].rsplit(" ", 1)[0] + "…"
    return sentence


def line_of(text: str, pattern: str) -> int | None:
    match = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def retext(part: Part, text: str) -> Part:
    return Part(part.path, part.start_line, part.end_line, part.symbol, text, part.snippet, part.doc)


def folder_counts(paths: list[str], depth: int = 2) -> Counter:
    """How many of ``paths`` lie under each folder, for folders up to ``depth`` levels down."""
    counts: Counter = Counter()
    for path in paths:
        parts = path.split("/")[:-1]
        for level in range(1, min(depth, len(parts)) + 1):
            counts["/".join(parts[:level])] += 1
    return counts


def is_code_path(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return not (
        any(part in NOT_CODE_DIRS or part.startswith((".", "_")) and part != "__init__.py" for part in parts[:-1])
        or name.startswith("test_")
        or name.endswith(("_test.py", "_test.go", ".test.js", ".spec.js", ".test.ts", ".spec.ts"))
        or name in ("conftest.py", "setup.py", "noxfile.py", "fabfile.py", "tasks.py")
    )


def block_end(text: str, start: int) -> int:
    """The line closing the brace block opened on ``start`` (or a little after), at most 150 lines on."""
    lines = text.splitlines()
    depth, opened = 0, False
    for number in range(start - 1, min(len(lines), start + 149)):
        depth += lines[number].count("{") - lines[number].count("}")
        opened = opened or "{" in lines[number]
        if opened and depth <= 0:
            return number + 1
    return min(len(lines), start + 149)


_CODE_SUFFIXES = {".py": "python", ".go": "go", ".js": "js", ".mjs": "js", ".cjs": "js", ".ts": "js", ".tsx": "js"}
_MINOR_SHARE = 0.2


def is_main_language(paths: list[str], language: str, manifest_name: str) -> bool:
    """Whether ``language`` is one the workspace is written in: it has the manifest, or a fifth of the code.

    A Python app's one static script or a JS project's helper script in Go is not worth an overview line.
    """
    if manifest_name in paths:
        return True
    counts = {"python": 0, "go": 0, "js": 0}
    for path in paths:
        kind = _CODE_SUFFIXES.get(path[path.rfind(".") :]) if "." in path else None
        if kind:
            counts[kind] += 1
    total = sum(counts.values())
    return total > 0 and counts[language] >= _MINOR_SHARE * total
