"""Rank a workspace's chunks for a question: FTS5 bm25, then boosts for the defining name and docs."""

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.ask import store
from app.ask.index import path_terms, symbol_terms
from app.ask.tokens import query_concepts, word_terms

_CANDIDATES = 200  # bm25's best this many are re-ranked
# Boosts per question concept found, scaled by its idf so that rare words count more than "get". A
# concept counts once however many of its synonyms match, so expansion cannot inflate a chunk.
_NAME_BOOST = 2.0  # the defined name itself: the chunk that defines the thing, not one that uses it
_NAME_PART_BOOST = 1.0  # a prefix or suffix of the name ("json" in jsonify, "file" in pyfile)
_OWNER_BOOST = 0.5  # the enclosing class
_PATH_BOOST = 0.3  # folder and file names
_DOC_BOOST = 1.0  # the docstring: where code says in words what it does
_SYNONYM_WEIGHT = 0.8  # the user's own word is better evidence than our guess at what they meant
_TEST_PENALTY = 0.7  # tests mention everything; users ask about the code under test
_PROSE_PENALTY = 0.6  # documentation and data files explain or configure, the code defines
_EXAMPLE_PENALTY = 0.8  # examples, docs' code and benchmarks use the library rather than define it
_FILE_WEIGHT = 0.5
_ABBREVIATIONS = False
_MIN_ABBREVIATION = 3
_FEEDBACK_TERMS = 0
_FEEDBACK_DOCS = 5
_FEEDBACK_WEIGHT = 0.3
_FIELD_WEIGHTS = (2.0, 1.0, 1.0, 1.0)  # bm25 weights of symbol, path, doc and body terms
_SHORT_LINES = 8
_SHORT_POWER = 0.5


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
    conn = store.open_for_reading(root, workspace_id)
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
    if _ABBREVIATIONS:
        concepts = _with_abbreviations(conn, concepts)
    ranked = _rank(conn, concepts, [1.0] * len(concepts))
    if _FEEDBACK_TERMS and ranked:
        extra = _feedback_terms(conn, ranked[:_FEEDBACK_DOCS], concepts)
        if extra:
            weights = [1.0] * len(concepts) + [_FEEDBACK_WEIGHT] * len(extra)
            ranked = _rank(conn, concepts + [(term,) for term in extra], weights)
    return _distinct(ranked, top_k)


def _with_abbreviations(conn: sqlite3.Connection, concepts: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Add the workspace's own abbreviations of each question word: code that says ``cfg``, ``env`` or
    ``ctx`` where the question says "configuration", "environment" or "context"."""
    prefixes = {
        concept[0][:n]: concept[0] for concept in concepts for n in range(_MIN_ABBREVIATION, len(concept[0]) - 1)
    }
    if not prefixes:
        return concepts
    placeholders = ",".join("?" * len(prefixes))
    sql = f"SELECT term FROM chunk_vocab WHERE term IN ({placeholders})"  # noqa: S608 - only "?"s
    known = {row[0] for row in conn.execute(sql, list(prefixes))}
    return [concept + tuple(p for p in known if prefixes[p] == concept[0] and p not in concept) for concept in concepts]


def _feedback_terms(conn: sqlite3.Connection, top: list[Source], concepts: list[tuple[str, ...]]) -> list[str]:
    """Name terms shared by the first pass's best definitions: the workspace's word for the question's topic."""
    asked = {term for concept in concepts for term in concept}
    votes: dict[str, float] = {}
    for source in top:
        for term in set(symbol_terms(source.symbol)):
            if term not in asked and len(term) >= 3:
                votes[term] = votes.get(term, 0.0) + source.score
    if not votes:
        return []
    idf = _idf(conn, list(votes))
    ranked = sorted(votes, key=lambda t: -votes[t] * idf[t])
    return ranked[:_FEEDBACK_TERMS]


def _rank(conn: sqlite3.Connection, concepts: list[tuple[str, ...]], weights: list[float]) -> list[Source]:
    terms = list(dict.fromkeys(term for concept in concepts for term in concept))
    # Each term is \\w characters only and double-quoted, so FTS5 sees plain strings, never operators.
    match = " OR ".join(f'"{term}"' for term in terms)
    hits = conn.execute(
        "SELECT rowid, bm25(chunk_terms, ?, ?, ?, ?) AS r, doc FROM chunk_terms WHERE chunk_terms MATCH ?"
        " ORDER BY r LIMIT ?",
        (*_FIELD_WEIGHTS, match, _CANDIDATES),
    ).fetchall()
    if not hits:
        return []
    idf = _idf(conn, terms)
    rows = _chunks(conn, [rowid for rowid, _, _ in hits])
    scored = []
    for rowid, rank, doc_terms in hits:
        path, start, end, symbol, doc, text = rows[rowid]
        score = -rank + _boost(concepts, weights, idf, path, symbol, set(doc_terms.split()))
        score *= _length_factor(end - start + 1) * _path_factor(path)
        scored.append((score, rowid))
    # Context: a definition in a file where much of the question matches is more likely the answer than
    # an isolated chunk that happens to share a word.
    file_scores: dict[str, float] = {}
    for score, rowid in scored:
        path = rows[rowid][0]
        file_scores[path] = file_scores.get(path, 0.0) + score
    best_file = max(file_scores.values()) or 1.0
    ranked = []
    for score, rowid in scored:
        path, start, end, symbol, doc, text = rows[rowid]
        score += _FILE_WEIGHT * score * file_scores[path] / best_file
        ranked.append(Source(path, start, end, symbol, text, round(score, 4), doc))
    ranked.sort(key=lambda s: (-s.score, s.path, s.start_line))
    return ranked


def _length_factor(lines: int) -> float:
    """Short chunks match few words but bm25 rewards them for it; long ones are split anyway."""
    return min(1.0, (lines / _SHORT_LINES)) ** _SHORT_POWER


def _path_factor(path: str) -> float:
    factor = 1.0
    if _is_test_path(path):
        factor *= _TEST_PENALTY
    if not _is_code_path(path):
        factor *= _PROSE_PENALTY
    if _is_example_path(path):
        factor *= _EXAMPLE_PENALTY
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
    concepts: list[tuple[str, ...]],
    weights: list[float],
    idf: dict[str, float],
    path: str,
    symbol: str | None,
    doc: set[str],
) -> float:
    *owners, name = (symbol or "").split(".")
    name_terms = set(word_terms(name)) if name else set()
    owner_terms = set(symbol_terms(".".join(owners))) - name_terms
    places = set(path_terms(path))

    total = 0.0
    for concept, weight in zip(concepts, weights, strict=True):
        boost = 0.0
        in_name = _best(concept, idf, name_terms.__contains__)
        boost += _NAME_BOOST * in_name
        if not in_name:
            boost += _NAME_PART_BOOST * _best(concept, idf, lambda term: _is_affix(term, name_terms))
        boost += _OWNER_BOOST * _best(concept, idf, owner_terms.__contains__)
        boost += _PATH_BOOST * _best(concept, idf, places.__contains__)
        boost += _DOC_BOOST * _best(concept, idf, doc.__contains__)
        total += weight * boost
    return total


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


_PROSE_SUFFIXES = (".md", ".rst", ".txt", ".adoc", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".lock", ".csv")
_EXAMPLE_FOLDERS = {"example", "examples", "docs", "doc", "benchmark", "benchmarks", "bench", "demo", "samples"}


def _is_code_path(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return "." in name and not name.endswith(_PROSE_SUFFIXES)


def _is_example_path(path: str) -> bool:
    return any(part.lower() in _EXAMPLE_FOLDERS for part in path.split("/")[:-1])


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
