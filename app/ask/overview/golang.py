"""Go: each package with its package comment, and ``func main`` of every main package."""

import re
from pathlib import Path

from app.ask import textfiles
from app.ask.overview.parts import (
    LICENSE_RE,
    MAX_LISTED,
    MAX_SNIPPET,
    Facts,
    Found,
    Part,
    block_end,
    first_sentence,
    is_main_language,
    line_of,
    line_span,
    retext,
)

_MAX_GO_DIRS = 40
_MAX_GO_FILES_PER_DIR = 6
_GO_PACKAGE_RE = re.compile(r"^package\s+(\w+)", re.MULTILINE)
_GO_TYPE_RE = re.compile(r"^type\s+([A-Z]\w*)", re.MULTILINE)
_GO_FUNC_RE = re.compile(r"^func\s+([A-Z]\w*)", re.MULTILINE)


def go_parts(folder: Path, sizes: dict[str, int], facts: Facts) -> Found:
    """Each package with its package comment; ``func main`` of every main package."""
    found = Found()
    if not is_main_language(list(sizes), "go", "go.mod"):
        return found
    by_dir: dict[str, list[str]] = {}
    for path in sizes:
        if path.endswith(".go") and not path.endswith("_test.go") and _go_code_path(path):
            by_dir.setdefault(path.rsplit("/", 1)[0] if "/" in path else "", []).append(path)
    dirs = sorted(by_dir, key=lambda d: (d.count("/") + (d != ""), d))[:_MAX_GO_DIRS]
    others = []
    for directory in dirs:
        files = sorted(by_dir[directory], key=lambda p: (p.rsplit("/", 1)[-1] != "doc.go", p))
        package, doc_part, main_part = None, None, None
        for path in files[:_MAX_GO_FILES_PER_DIR]:
            text = textfiles.read_text(folder / path) or ""
            clause = _GO_PACKAGE_RE.search(text)
            if not clause:
                continue
            package = clause.group(1)
            doc_part = doc_part or _go_package_doc(path, text, clause)
            if package == "main":
                main_part = main_part or _go_main(path, text)
            if doc_part and (package != "main" or main_part):
                break
        if package is None:
            continue
        where = f"{directory}/" if directory else "the top folder"
        if main_part:
            found.entries.append(retext(main_part, f"`func main` in {main_part.path} (line {main_part.start_line})"))
        import_path = f"{facts.go_module}/{directory}".rstrip("/") if facts.go_module else directory or package
        sentence = f"The Go package `{package}` ({where}, `{import_path}`)"
        if doc_part:
            sentence += ": " + doc_part.text
        if directory.count("/") == 0:
            biggest_files = sorted(files, key=lambda p: (-sizes[p], p))[: _MAX_GO_FILES_PER_DIR * 4]
            texts = {path: textfiles.read_text(folder / path) or "" for path in biggest_files}
            biggest = _go_files(texts)
            sentence = sentence.rstrip(".") + _exported(texts)
            found.layout.append(retext(doc_part or biggest[0], sentence.rstrip(".") + "."))
            found.modules.extend(biggest)
        else:
            others.append(f"`{package}` ({directory}/)")
    if others:
        listed = ", ".join(others[:MAX_LISTED]) + (
            f" and {len(others) - MAX_LISTED} more" if len(others) > MAX_LISTED else ""
        )
        found.layout.append(Part("", 0, 0, None, f"Deeper packages: {listed}.", ""))
    return found


def _go_code_path(path: str) -> bool:
    # Go's own conventions: testdata/ and folders starting with . or _ are ignored by the go tool.
    parts = path.split("/")[:-1]
    return not any(part in ("testdata", "vendor", "examples", "example") or part[:1] in "._" for part in parts)


def _exported(texts: dict[str, str]) -> str:
    """ ". It offers types `A`, `B` and functions `C`" from the package's exported declarations."""
    biggest_first = sorted(texts.values(), key=len, reverse=True)  # the central type lives in the biggest file
    types = list(dict.fromkeys(name for text in biggest_first for name in _GO_TYPE_RE.findall(text)))
    funcs = list(dict.fromkeys(name for text in biggest_first for name in _GO_FUNC_RE.findall(text)))
    offers = []
    for kind, names in (("types", types), ("functions", funcs)):
        if names:
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            offers.append(f"{kind} " + ", ".join(f"`{name}`" for name in names[:MAX_LISTED]) + more)
    return ". It offers " + "; ".join(offers) if offers else ""


def _go_files(texts: dict[str, str]) -> list[Part]:
    """The package's biggest files from their package clause on (the licence header above it says nothing)."""
    parts = []
    for path in sorted(texts, key=lambda p: (-len(texts[p]), p))[:MAX_LISTED]:
        text = texts[path]
        start = line_of(text, _GO_PACKAGE_RE.pattern) or 1
        end = min(len(text.splitlines()), start + MAX_SNIPPET - 1)
        parts.append(Part(path, start, end, None, path, line_span(text, start, end)))
    return parts


def _go_package_doc(path: str, text: str, clause: re.Match) -> Part | None:
    lines = text.splitlines()
    clause_line = text.count("\n", 0, clause.start()) + 1
    start = clause_line - 1
    while start >= 1 and lines[start - 1].lstrip().startswith("//"):
        start -= 1
    if start + 1 >= clause_line:
        return None
    comment = " ".join(line.lstrip().lstrip("/").strip() for line in lines[start : clause_line - 1])
    if LICENSE_RE.search(comment) and not comment.startswith("Package"):
        return None
    # The comment, the package clause and what follows: the snippet shows the package, not just its title.
    end = min(len(lines), start + MAX_SNIPPET)
    return Part(path, start + 1, end, None, first_sentence(comment), line_span(text, start + 1, end), comment)


def _go_main(path: str, text: str) -> Part | None:
    start = line_of(text, r"^func\s+main\s*\(\s*\)")
    if start is None:
        return None
    end = block_end(text, start)
    return Part(path, start, end, "main", "main", line_span(text, start, end))
