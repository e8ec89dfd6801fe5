"""Broad questions ("How does this code work?", "Where do I start?") answered with an overview of the workspace.

A broad question has no words of its own to search for, so ranking finds nothing or noise. Instead the answer
is read from the workspace itself: what its README and manifest say it is, its top-level packages and modules
with their docstrings or package comments, and where it starts (console scripts, ``__main__.py``, app
factories, ``wsgi.py``, ``package.json`` ``main``/``bin``, Go ``func main``). Those places are the sources.
"""

import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

from app.ask import indexdb, textfiles
from app.ask.overview.golang import go_parts
from app.ask.overview.javascript import js_parts
from app.ask.overview.manifests import manifest
from app.ask.overview.parts import MAX_SNIPPET, Facts, Part, is_code_path
from app.ask.overview.python import python_parts
from app.ask.overview.question import MAX_NAME_WORDS, UNMATCHED_OWN_WORDS, WORD_RE, is_broad, question_shape
from app.ask.overview.readme import README_RE, readme_part
from app.ask.ranking import Source

_OVERVIEW_SOURCE_LINES = 150
_FALLBACK_FILES = 10
_MAX_ENTRIES = 8
_BIGGEST_FILES = 5
_MAX_NAMING_PACKAGES = 2


@dataclass(frozen=True)
class Overview:
    """The overview's answer text and the places it was read from, best first."""

    answer: str
    sources: list[Source]


def overview_for(root: Path, workspace_id: str, question: str, matched: bool, top_k: int) -> Overview | None:
    """The overview when ``question`` is about the workspace as a whole, else None (rank as usual).

    ``matched`` says whether ranking found anything; see ``is_broad``.
    """
    shape = question_shape(question)
    # The project's names are read from the workspace only when the question could still be broad.
    if len(shape.own) > MAX_NAME_WORDS + UNMATCHED_OWN_WORDS or not is_broad(question, frozenset(shape.own)):
        return None
    folder = Path(root) / workspace_id
    sizes = _indexed_files(root, workspace_id, folder)
    if not sizes:
        return None
    # An archive of a repository often holds one folder (project-1.0/): the project starts there.
    top = _project_folder(list(sizes))
    if top:
        folder = folder / top
        sizes = {path[len(top) + 1 :]: size for path, size in sizes.items()}
    paths = list(sizes)
    facts = manifest(folder, paths)
    if not is_broad(question, _project_names(workspace_id, facts.name, paths), matched):
        return None
    overview = _build(folder, sizes, facts, workspace_id, top_k)
    if top:
        sources = [replace(source, path=f"{top}/{source.path}") for source in overview.sources]
        overview = Overview(f"(Everything is in {top}/; paths below are inside it.)\n\n{overview.answer}", sources)
    return overview


def _project_folder(paths: list[str]) -> str | None:
    """The one folder holding the whole workspace, when it has a README or a manifest of its own."""
    # ``paths`` are sorted, so every path shares the first one's folder when the last one does.
    first, last = paths[0], paths[-1]
    top = first.split("/", 1)[0]
    if "/" not in first or not last.startswith(top + "/"):
        return None
    inside = {path[len(top) + 1 :] for path in paths if path.count("/") == 1}
    markers = ("pyproject.toml", "setup.py", "setup.cfg", "package.json", "go.mod")
    return top if any(README_RE.match(name) or name in markers for name in inside) else None


def _indexed_files(root: Path, workspace_id: str, folder: Path) -> dict[str, int]:
    """Path and size of the files the index knows (its size and ignore rules), else of a fresh scan."""
    conn = indexdb.open_for_reading(root, workspace_id)
    if conn is not None:
        try:
            return dict(conn.execute("SELECT path, size FROM files ORDER BY path").fetchall())
        except sqlite3.OperationalError:
            pass
        finally:
            conn.close()
    return {path: size for path, size, _mtime in sorted(textfiles.scan(folder))}


def _project_names(workspace_id: str, name: str | None, paths: list[str]) -> frozenset[str]:
    """Words that name the project: its workspace id, its declared name, its top-level package."""
    names = set(WORD_RE.findall(workspace_id.lower()))
    if name:
        names.update(WORD_RE.findall(name.lower()))
    # A workspace of one or two packages is named after them; one holding dozens is named by none of them.
    packages = {
        parts[-2].lower()
        for parts in (path.split("/") for path in paths if path.endswith("__init__.py"))
        if len(parts) == 2 or len(parts) == 3 and parts[0] in ("src", "lib")
    }
    return frozenset(names | packages if len(packages) <= _MAX_NAMING_PACKAGES else names)


def _build(folder: Path, sizes: dict[str, int], facts: Facts, workspace_id: str, top_k: int) -> Overview:
    paths = list(sizes)
    readme = readme_part(folder, paths)
    python = python_parts(folder, sizes, facts)
    javascript = js_parts(folder, sizes, facts)
    go = go_parts(folder, sizes, facts)
    layout = [*python.layout, *javascript.layout, *go.layout]
    entries = [*python.entries, *javascript.entries, *go.entries]
    layout = _make_room(layout, entries)
    # Notable modules not already shown: a module's head would also hide an entry point inside it.
    shown = {part.path for part in [*layout, *entries]}
    modules = [part for part in [*python.modules, *javascript.modules, *go.modules] if part.path not in shown]
    manifests = facts.parts

    paragraphs = [_about(workspace_id, facts, readme, described=bool(layout or entries))]
    if layout:
        paragraphs.append(" ".join(part.text for part in layout))
    elif not entries and (biggest := _biggest_sources(folder, sizes)):
        # A language without a reader here (Rust, Java, C…): its biggest source files are where the code is.
        listed = ", ".join(f"{part.path} ({part.text})" for part in biggest)
        paragraphs.append(f"Its biggest source files: {listed}.")
        modules = biggest
    elif not entries:
        shallow = sorted(paths, key=lambda p: (p.count("/"), p))
        more = f" and {len(shallow) - _FALLBACK_FILES} more" if len(shallow) > _FALLBACK_FILES else ""
        paragraphs.append("Its files, shallowest first: " + ", ".join(shallow[:_FALLBACK_FILES]) + more + ".")
    if entries:
        more = f"; and {len(entries) - _MAX_ENTRIES} more" if len(entries) > _MAX_ENTRIES else ""
        paragraphs.append("Where it starts: " + "; ".join(part.text for part in entries[:_MAX_ENTRIES]) + more + ".")
    elif layout:
        paragraphs.append(
            f"It declares no command-line entry point, so it is used as a library: start reading at {layout[0].where}."
        )
    folders = _folders(paths)
    if folders:
        paragraphs.append(folders)

    # Manifests come last: the README says more than metadata, the entry function more than its declaration.
    # First the README, the main package, two entry points and one module; then the rest of each in turn.
    first = _interleave([[readme] if readme else [], layout[:1], entries[:2], modules[:1]])
    ordered = first + _interleave([layout[1:], entries[2:], modules[1:]]) + manifests
    ordered = _distinct(ordered)
    ordered = [part for part in ordered if part.snippet.strip()]  # a binary or empty file shows nothing
    if not ordered:
        ordered = _fallback_parts(folder, paths, top_k)
    sources = []
    for number, part in enumerate(ordered[:top_k]):
        sources.append(_source(part, round(1.0 / (number + 1), 4)))
    return Overview("\n\n".join(paragraphs), sources)


def _about(workspace_id: str, facts: Facts, readme: Part | None, described: bool) -> str:
    name = facts.name or workspace_id
    description = facts.description
    if description and readme is not None and _similar(description, readme.text):
        description = None  # the README's first paragraph says the same, and more
    if readme is None:
        if description:
            return f"`{name}` — {description.rstrip('.')}."
        if described:
            return f"`{name}` has no README or description in this workspace; here is what its code says about itself."
        return f"`{name}` has no README in this workspace."
    if description:
        return f"`{name}` — {description.rstrip('.')}. Its {readme.path} says: {readme.text}"
    return f"What `{name}` is, in its {readme.path}: {readme.text}"


def _similar(first: str, second: str) -> bool:
    words = set(WORD_RE.findall(first.lower()))
    return bool(words) and len(words & set(WORD_RE.findall(second.lower()))) >= 0.6 * len(words)


def _make_room(parts: list[Part], entries: list[Part]) -> list[Part]:
    """Cut a file's head short of an entry point inside it, so both can be sources without overlapping."""
    out = []
    for part in parts:
        starts = [
            e.start_line for e in entries if e.path == part.path and part.start_line < e.start_line <= part.end_line
        ]
        if starts and part.symbol is None:
            lines = part.snippet.split("\n")[: min(starts) - part.start_line]
            while lines and not lines[-1].strip():
                lines.pop()
            if lines:
                end = part.start_line + len(lines) - 1
                part = Part(part.path, part.start_line, end, None, part.text, "\n".join(lines), part.doc)
        out.append(part)
    return out


def _interleave(groups: list[list[Part]]) -> list[Part]:
    """One of each kind in turn (the README first), so a small ``top_k`` still shows every kind."""
    return [
        group[rank]
        for rank in range(max((len(group) for group in groups), default=0))
        for group in groups
        if rank < len(group) and group[rank].path
    ]


def _distinct(parts: list[Part]) -> list[Part]:
    """Drop a part whose lines overlap one already chosen: the same place twice says nothing new."""
    out: list[Part] = []
    for part in parts:
        if not any(
            part.path == kept.path and part.start_line <= kept.end_line and kept.start_line <= part.end_line
            for kept in out
        ):
            out.append(part)
    return out


def _folders(paths: list[str]) -> str:
    counts: dict[str, int] = {}
    for path in paths:
        if "/" in path and not path.startswith("."):
            top = path.split("/", 1)[0]
            counts[top] = counts.get(top, 0) + 1
    if not counts:
        return ""
    biggest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:8]
    listed = ", ".join(f"{top}/ ({count} file{'s' if count != 1 else ''})" for top, count in biggest)
    top_files = sum(1 for path in paths if "/" not in path)
    if not top_files:
        return f"Top-level folders: {listed}."
    return f"Top-level folders: {listed}; {top_files} file{'s' if top_files != 1 else ''} at the top."


_NOT_SOURCE = (
    ".md", ".markdown", ".rst", ".txt", ".adoc", ".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".csv", ".tsv",
    ".xml", ".html", ".htm", ".css", ".scss", ".svg", ".lock", ".log", ".po", ".pot", ".in", ".sum", ".mod",
)  # fmt: skip


def _biggest_sources(folder: Path, sizes: dict[str, int]) -> list[Part]:
    """The biggest files that look like source code (an extension that is not prose, data or config)."""
    candidates = [
        path
        for path in sizes
        if "." in path.rsplit("/", 1)[-1].lstrip(".") and not path.lower().endswith(_NOT_SOURCE) and is_code_path(path)
    ]
    parts = []
    for path in sorted(candidates, key=lambda p: (-sizes[p], p)):
        text = textfiles.read_text(folder / path)
        if text and text.strip():
            count = len(text.splitlines())
            end = min(count, MAX_SNIPPET)
            lines = f"{count} line{'s' if count != 1 else ''}"
            parts.append(Part(path, 1, end, None, lines, "\n".join(text.splitlines()[:end])))
        if len(parts) == _BIGGEST_FILES:
            break
    return parts


def _fallback_parts(folder: Path, paths: list[str], top_k: int) -> list[Part]:
    """No README, manifest or known language: the shallowest files, so the overview still points somewhere."""
    parts = []
    for path in sorted(paths, key=lambda p: (p.count("/"), p)):
        text = textfiles.read_text(folder / path)
        if text and text.strip():
            lines = text.splitlines()
            end = min(len(lines), 40)
            parts.append(Part(path, 1, end, None, path, "\n".join(lines[:end])))
        if len(parts) == top_k:
            break
    return parts


def _source(part: Part, score: float) -> Source:
    end = min(part.end_line, part.start_line + _OVERVIEW_SOURCE_LINES - 1)
    # A snippet is its lines joined by "\n": split it back the same way (splitlines would also drop a
    # last line that is empty, and split at \x1e, \x0c and the like).
    snippet = "\n".join(part.snippet.split("\n")[: end - part.start_line + 1])
    return Source(
        path=part.path,
        start_line=part.start_line,
        end_line=end,
        symbol=part.symbol,
        snippet=snippet,
        score=score,
        doc=part.doc,
    )
