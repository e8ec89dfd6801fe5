"""Rank a workspace's chunks for a question: FTS5 bm25, boosts for the defining name and docs, then
generic factors: chunk length, what kind of file it is (tests, docs, examples), and its class's context."""

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.ask import indexdb
from app.ask.index import doc_terms, path_terms, symbol_terms
from app.ask.tokens import query_concepts, word_terms

_CANDIDATES = 100  # bm25's best this many are re-ranked
# Boosts per question concept found, scaled by its idf so that rare words count more than "get". A
# concept counts once however many of its synonyms match, so expansion cannot inflate a chunk.
_NAME_BOOST = 2.0  # the defined name itself: the chunk that defines the thing, not one that uses it
_NAME_PART_BOOST = 1.0  # a prefix or suffix of the name ("json" in jsonify, "file" in pyfile)
_OWNER_BOOST = 0.5  # the enclosing class
_PATH_BOOST = 0.3  # folder and file names
_DOC_BOOST = 1.0  # the docstring: where code says in words what it does
_SYNONYM_WEIGHT = 0.8  # the user's own word is better evidence than our guess at what they meant
_TEST_PENALTY = 0.2  # tests mention everything; users ask about the code under test
_PROSE_PENALTY = 0.3  # documentation and data files explain or configure, the code defines
_EXAMPLE_PENALTY = 0.8  # examples, docs' code and benchmarks use the library rather than define it
_RECORD_PENALTY = 0.3  # changelogs, licences and release notes record the project; they explain no code
_BUILT_PENALTY = 0.8  # dist/ holds built copies (bundles) of the code: the source, when shipped, comes first
_CLASS_WEIGHT = 1.0  # up to doubles a chunk whose class leads the ranking (see _class_context)
_CONTEXT_LEADERS = 5
# bm25 weights of symbol, path, doc and body terms; the boosts above already favour names and docs.
_FIELD_WEIGHTS = (2.0, 1.0, 1.0, 1.0)
# Chunks shorter than this many lines are scaled down by (lines / _SHORT_LINES) ** _SHORT_POWER:
# bm25's length normalisation favours a three-line chunk that shares one word with the question.
_SHORT_LINES = 30
_SHORT_POWER = 0.8


@dataclass(frozen=True)
class Source:
    """One ranked chunk; ``to_dict`` gives the API shape."""

    path: str
    start_line: int
    end_line: int
    symbol: str | None
    snippet: str
    score: float
    doc: str | None = None
    # From the call graph (callgraph.neighbours): each {"symbol", "path", "line"}.
    callers: tuple[dict, ...] = ()
    callees: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "symbol": self.symbol,
            "snippet": self.snippet,
            "score": self.score,
            "callers": [dict(item) for item in self.callers],
            "callees": [dict(item) for item in self.callees],
        }


def search(root: Path, workspace_id: str, query: str, top_k: int = 5) -> list[Source]:
    """Best ``top_k`` chunks for ``query``; any text is safe and an empty result is normal."""
    concepts = query_concepts(query)
    if not concepts:
        return []
    conn = indexdb.open_for_reading(root, workspace_id)
    if conn is None:
        return []
    try:
        return _search(conn, concepts, top_k)
    except sqlite3.OperationalError:
        # Only a half-built index (no tables yet) gets here: the terms are quoted, never parsed.
        return []
    finally:
        conn.close()


def _search(conn: sqlite3.Connection, concepts: list[tuple[str, ...]], top_k: int) -> list[Source]:
    return _distinct(_rank(conn, concepts), top_k)


def _rank(conn: sqlite3.Connection, concepts: list[tuple[str, ...]]) -> list[Source]:
    terms = list(dict.fromkeys(term for concept in concepts for term in concept))
    # Each term is \\w characters only and double-quoted, so FTS5 sees plain strings, never operators.
    match = " OR ".join(f'"{term}"' for term in terms)
    hits = conn.execute(
        "SELECT rowid, bm25(chunk_terms, ?, ?, ?, ?) AS r FROM chunk_terms WHERE chunk_terms MATCH ?"
        " ORDER BY r LIMIT ?",
        (*_FIELD_WEIGHTS, match, _CANDIDATES),
    ).fetchall()
    if not hits:
        return []
    idf = _idf(conn, terms)
    rows = _chunks(conn, [rowid for rowid, _ in hits])
    scored = []
    for rowid, rank in hits:
        path, start, end, symbol, doc, _ = rows[rowid]
        score = -rank + _boost(concepts, idf, path, symbol, set(doc_terms(doc).split()))
        scored.append((score * _length_factor(end - start + 1) * _path_factor(path), rowid))
    context = _class_context(scored, rows)
    ranked = []
    for score, rowid in scored:
        path, start, end, symbol, doc, text = rows[rowid]
        score *= 1.0 + _CLASS_WEIGHT * context.get((path, _owner(symbol)), 0.0)
        ranked.append(Source(path, start, end, symbol, indexdb.unpack(text), round(score, 4), doc))
    ranked.sort(key=lambda s: (-s.score, s.path, s.start_line))
    return ranked


def _owner(symbol: str | None) -> str:
    """The outermost definition around a chunk: its class (Go receiver type, JS object), or itself."""
    return symbol.split(".", 1)[0] if symbol else ""


def _class_context(scored: list[tuple[float, int]], rows: dict[int, tuple]) -> dict[tuple[str, str], float]:
    """How strongly each class among the best few chunks matches, 0..1: a method of the class the
    question is about beats a lone function that shares a word, and short methods lose their context
    less. Only the leaders count, so a huge class that matches a little everywhere gains nothing."""
    totals: dict[tuple[str, str], float] = {}
    for score, rowid in sorted(scored, reverse=True)[:_CONTEXT_LEADERS]:
        path, symbol = rows[rowid][0], rows[rowid][3]
        if symbol:
            key = (path, _owner(symbol))
            totals[key] = totals.get(key, 0.0) + score
    best = max(totals.values(), default=0.0) or 1.0
    return {key: total / best for key, total in totals.items()}


def _length_factor(lines: int) -> float:
    return min(1.0, lines / _SHORT_LINES) ** _SHORT_POWER


def _path_factor(path: str) -> float:
    factor = 1.0
    if _is_test_path(path):
        factor *= _TEST_PENALTY
    if not _is_code_path(path):
        factor *= _PROSE_PENALTY
    if _is_example_path(path):
        factor *= _EXAMPLE_PENALTY
    if _is_record_path(path):
        factor *= _RECORD_PENALTY
    if _is_built_path(path):
        factor *= _BUILT_PENALTY
    return factor


def _distinct(ranked: list[Source], top_k: int) -> list[Source]:
    """Keep the best piece of each symbol: pieces of one long function would only repeat a pointer."""
    seen, out = set(), []
    for source in ranked:
        key = (source.path, source.symbol or source.start_line)
        if key not in seen:
            seen.add(key)
            out.append(source)
            if len(out) == top_k:
                break
    return out


def _boost(
    concepts: list[tuple[str, ...]], idf: dict[str, float], path: str, symbol: str | None, doc: set[str]
) -> float:
    *owners, name = (symbol or "").split(".")
    name_terms = set(word_terms(name)) if name else set()
    owner_terms = set(symbol_terms(".".join(owners))) - name_terms
    places = set(path_terms(path))

    boost = 0.0
    for concept in concepts:
        in_name = _best(concept, idf, name_terms.__contains__)
        boost += _NAME_BOOST * in_name
        if not in_name:
            boost += _NAME_PART_BOOST * _best(concept, idf, lambda term: _is_affix(term, name_terms))
        boost += _OWNER_BOOST * _best(concept, idf, owner_terms.__contains__)
        boost += _PATH_BOOST * _best(concept, idf, places.__contains__)
        boost += _DOC_BOOST * _best(concept, idf, doc.__contains__)
    return boost


def _best(concept: tuple[str, ...], idf: dict[str, float], matches: Callable[[str], bool]) -> float:
    """The idf of the concept's best matching term, a synonym counting a little less; 0 if none match."""
    return max(
        (idf[term] * (1.0 if number == 0 else _SYNONYM_WEIGHT) for number, term in enumerate(concept) if matches(term)),
        default=0.0,
    )


def _is_affix(term: str, names: set[str]) -> bool:
    return len(term) >= 3 and any(name != term and (name.startswith(term) or name.endswith(term)) for name in names)


def _is_test_path(path: str) -> bool:
    parts = path.lower().split("/")
    name = parts[-1]
    return (
        any(part in ("test", "tests", "testing") for part in parts[:-1])
        or name.startswith("test_")
        or name.endswith(("_test.py", ".test.js", ".spec.js", ".test.ts", ".spec.ts", "_test.go"))
    )


_PROSE_SUFFIXES = (
    *(".md", ".rst", ".txt", ".adoc", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".lock", ".csv"),
    *(".po", ".pot"),  # gettext catalogues: every message in every language, none of the code
)
_EXAMPLE_FOLDERS = {"example", "examples", "docs", "doc", "benchmark", "benchmarks", "bench", "demo", "samples"}


# Files that record the project's history and terms rather than explain it (the name without extension).
_RECORD_NAMES = {"changelog", "changes", "history", "news", "license", "licence", "copying", "notice", "authors"}
_RECORD_FOLDERS = {"releasenotes", "changelog", "changes", "newsfragments", "changelog.d"}


def _is_code_path(path: str) -> bool:
    # A dot file (.editorconfig, .gitignore) is a tool's settings, whatever its name.
    name = path.rsplit("/", 1)[-1].lower().lstrip(".")
    return "." in name and not name.endswith(_PROSE_SUFFIXES)


def _is_example_path(path: str) -> bool:
    return any(part.lower() in _EXAMPLE_FOLDERS for part in path.split("/")[:-1])


def _is_built_path(path: str) -> bool:
    # Where only a built copy is shipped, all its code shares the factor and keeps its order.
    return "dist" in path.lower().split("/")[:-1]


def _is_record_path(path: str) -> bool:
    parts = path.lower().split("/")
    name = parts[-1].split(".", 1)[0]
    return name in _RECORD_NAMES or name == "pkg-info" or any(part in _RECORD_FOLDERS for part in parts[:-1])


def _idf(conn: sqlite3.Connection, terms: list[str]) -> dict[str, float]:
    total = conn.execute("SELECT count(*) FROM chunks").fetchone()[0] or 1
    placeholders = ",".join("?" * len(terms))
    sql = f"SELECT term, doc FROM chunk_vocab WHERE term IN ({placeholders})"  # noqa: S608 - only "?"s
    counts = dict(conn.execute(sql, terms))
    return {term: math.log(1 + (total - counts.get(term, 0) + 0.5) / (counts.get(term, 0) + 0.5)) for term in terms}


def _chunks(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple]:
    placeholders = ",".join("?" * len(ids))
    columns = "id, path, start_line, end_line, symbol, doc, text"
    sql = f"SELECT {columns} FROM chunks WHERE id IN ({placeholders})"  # noqa: S608 - only "?"s
    rows = conn.execute(sql, ids)
    return {row[0]: row[1:] for row in rows}
