"""The workspace's call graph: which of its functions, methods and classes call which, found at index time.

Nodes are the symbols of chunks (``func``, ``Class``, ``Class.method``) with their path and first line.
Call sites are found in each symbol's own text by shape, outside strings and comments: ``name(``,
``receiver.name(``, ``self.name(`` / ``this.name(`` / a Go receiver. A site becomes an edge only when
its name and receiver point at one defined symbol (same class, a module or class of that name, a
receiver named like the class, then the nearest single definition); an ambiguous call stays unresolved
rather than guessed. Sites are kept unresolved too, so a changed file re-resolves only the calls whose
name it defines or defined. The ``graph_*`` tables (schema in ``store.py``) are written only here.
"""

import dataclasses
import functools
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from app.ask import store
from app.ask.chunking import Chunk

MAX_NEIGHBOURS = 5  # callers and callees listed per source

# How a call site names its receiver in ``graph_calls.receiver``: no receiver, the caller's own object
# (self, cls, this, a Go method's receiver), something without a name (``f().x()``), else the name itself.
# A bare call of a name imported from a module is recorded with that module: "@module".
BARE, OWN, UNNAMED, MODULE = "", ".", "?", "@"

_PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")
_HASH_COMMENT_SUFFIXES = (".rb", ".sh", ".bash", ".pl", ".pm", ".r", ".R")
_PYTHON_IMPORT_RE = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+)?import[ \t]+(\([^)]*\)|[^\n#]*)", re.M)
# Strings and comments are blanked before looking for calls, so that ``name(`` in a docstring or
# an example in a comment is not a call. Unrolled string loops: no backtracking on long strings.
_HASH_NOISE_RE = re.compile(
    r"#[^\n]*+|\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''"
    r"|\"[^\"\\\n]*+(?:\\.[^\"\\\n]*+)*+\"|'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+'"
)
_SLASH_NOISE_RE = re.compile(
    r"//[^\n]*+|/\*[\s\S]*?\*/|`[^`\\]*+(?:\\.[^`\\]*+)*+`"
    r"|\"[^\"\\\n]*+(?:\\.[^\"\\\n]*+)*+\"|'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+'"
)
_GO_RECEIVER_RE = re.compile(r"\A\s*func\s*\(\s*([A-Za-z_]\w*)\s")
# ``name(``, ``receiver.name(``, ``x?.name(`` or ``word name(``, written backwards.
_REVERSED_CALL_RE = re.compile(r"\([ \t]*+([\w$]++)(?:[ \t]*+\.\??[ \t]*+([\w$]*+)|[ \t]++([\w$]++))?")
_OWN_NAMES = frozenset({"self", "cls", "this"})
# Words that take a parenthesis in some language without being calls, and declaration keywords whose
# following name is being defined, not called.
_NOT_CALLS = frozenset({
    "if", "elif", "while", "for", "foreach", "switch", "catch", "return", "await", "yield", "typeof", "sizeof",
    "assert", "not", "and", "or", "in", "is", "lambda", "with", "except", "del", "function", "func", "def",
    "class", "fn", "new", "super",
})  # fmt: skip
_DECLARES = frozenset({"def", "class", "function", "func", "fn", "sub", "proc"})
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


@dataclass
class Node:
    """One symbol of a file and the distinct calls in its text, in order of first appearance."""

    symbol: str
    line: int
    end_line: int
    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (receiver, name) -> order
    owner: str = field(init=False)  # "Class" of "Class.method"; "" at the top level
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.owner, _, self.name = self.symbol.rpartition(".")


@dataclass(frozen=True)
class Candidate:
    """A defined symbol as resolution sees it."""

    id: int
    path: str
    name: str
    owner: str  # "" for a top-level function or class


def file_nodes(path: str, chunks: Iterable[Chunk]) -> list[Node]:
    """The graph nodes of one file and their call sites, from its chunks; no database involved."""
    chunks = list(chunks)
    python = path.endswith(_PYTHON_SUFFIXES)
    noise = _HASH_NOISE_RE if python or path.endswith(_HASH_COMMENT_SUFFIXES) else _SLASH_NOISE_RE
    imported, modules = _python_imports(chunks) if python else ({}, {})
    nodes: dict[str, Node] = {}
    for chunk in chunks:
        if not chunk.symbol:
            continue
        node = nodes.get(chunk.symbol)
        if node is None:
            node = nodes[chunk.symbol] = Node(chunk.symbol, chunk.start_line, chunk.end_line)
        node.line, node.end_line = min(node.line, chunk.start_line), max(node.end_line, chunk.end_line)
        own = _OWN_NAMES
        if chunk.text.lstrip().startswith("func") and (receiver := _GO_RECEIVER_RE.match(chunk.text)):
            own = _OWN_NAMES | {receiver.group(1)}
        for receiver, name in call_sites(noise.sub('""', chunk.text), own):
            if receiver == BARE and name in imported:
                receiver, name = imported[name]
            elif receiver in modules:
                receiver = modules[receiver]
            if name == node.name and receiver in (BARE, OWN):
                continue  # its own definition line, or recursion: says nothing about connections
            node.calls.setdefault((receiver, name), len(node.calls))
    return list(nodes.values())


def _python_imports(chunks: list[Chunk]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """What a module's top-level imports say about names: ``from m import f as g`` makes ``g()`` a call
    of ``f`` from module ``m``, and ``import pkg.mod as x`` makes ``x.f()`` a call on ``mod``."""
    names: dict[str, tuple[str, str]] = {}
    modules: dict[str, str] = {}
    for chunk in chunks:
        if chunk.symbol is not None or "import" not in chunk.text:
            continue
        for statement in _PYTHON_IMPORT_RE.finditer(chunk.text):
            source, imported = statement.groups()
            for item in imported.strip("() \t").split(","):
                original, _, alias = (part.strip() for part in item.partition(" as "))
                if not original.replace(".", "").replace("_", "").isalnum():
                    continue
                if source is None:
                    modules[alias or original] = original.rpartition(".")[2]
                elif source.strip("."):
                    names[alias or original] = (MODULE + source.rpartition(".")[2], original)
    return names, modules


def call_sites(code: str, own: frozenset[str] = _OWN_NAMES) -> list[tuple[str, str]]:
    """``(receiver, name)`` of each ``name(`` in ``code`` (strings and comments already blanked); ``own``
    are the names of the caller's own object."""
    sites = []
    # Read backwards from each "(": a regex anchored there is cheaper than one searching forwards.
    backwards = code[::-1]
    match_at = _REVERSED_CALL_RE.match
    paren = backwards.find("(")
    while paren >= 0:
        match = match_at(backwards, paren)
        paren = backwards.find("(", paren + 1)
        if match is None:
            continue
        name, dotted, word = match.groups()
        name = name[::-1]
        if name[0].isdigit() or name in _NOT_CALLS:
            continue
        if dotted is not None:
            receiver = dotted[::-1]
            receiver = UNNAMED if not receiver or receiver[0].isdigit() else OWN if receiver in own else receiver
        elif word is not None and word[::-1] in _DECLARES:
            continue  # ``def name(`` declares the name
        else:
            receiver = BARE
        sites.append((receiver, name))
    sites.reverse()
    return sites


# -- resolution ---------------------------------------------------------------------------------------------
def resolve(caller_path: str, caller_owner: str, receiver: str, candidates: Sequence[Candidate]) -> int | None:
    """The id of the one symbol a call means, or None when no definition or several fit equally well.

    ``candidates`` are the defined symbols with the called name. Where several fit, the nearest
    single one wins: same file, then same folder, then the only one in the workspace.
    """
    if not candidates:
        return None
    top_level = [c for c in candidates if not c.owner]
    if receiver.startswith(MODULE):
        module = receiver[len(MODULE) :]
        in_module = [c for c in top_level if module in _module_names(c.path)]
        return _nearest(in_module or top_level, caller_path)
    if receiver == BARE:
        return _nearest(top_level, caller_path)
    methods = [c for c in candidates if c.owner]
    if receiver == OWN:
        same_class = [c for c in methods if caller_owner and c.owner == caller_owner]
        return _nearest(same_class or methods, caller_path)
    if receiver != UNNAMED:
        # Class.method(), module.function(), then an object named after its class (store.lookup()
        # on a KeyStore): each more of a guess than the one before, so the first that fits decides.
        of_class = [c for c in methods if c.owner.rpartition(".")[2] == receiver]
        if of_class:
            return _nearest(of_class, caller_path)
        in_module = [c for c in top_level if receiver in _module_names(c.path)]
        if in_module:
            return _nearest(in_module, caller_path)
        words = _words(receiver)
        named_like = [c for c in methods if words & _words(c.owner.rpartition(".")[2])]
        if named_like:
            return _nearest(named_like, caller_path)
    # Nothing says which class: only a method defined right beside the caller is a safe bet.
    beside = [c for c in methods if c.path == caller_path]
    return beside[0].id if len(beside) == 1 else None


def _nearest(candidates: list[Candidate], caller_path: str) -> int | None:
    folder = _folder(caller_path)
    for tier in (
        [c for c in candidates if c.path == caller_path],
        [c for c in candidates if _folder(c.path) == folder],
        candidates,
    ):
        if tier:
            return tier[0].id if len(tier) == 1 else None
    return None


def _folder(path: str) -> str:
    return path.rpartition("/")[0]


def _module_names(path: str) -> tuple[str, str]:
    """The names code uses for a file's module: its stem (``store``), and its folder (a package)."""
    folder, _, name = path.rpartition("/")
    return name.split(".", 1)[0], folder.rpartition("/")[2]


@functools.lru_cache(maxsize=50_000)
def _words(identifier: str) -> frozenset[str]:
    """Lower-case words of an identifier, plural ``s`` dropped: ``keys`` and ``KeyStore`` share "key"."""
    out = set()
    for part in identifier.split("_"):
        for word in _WORD_RE.findall(part):
            word = word.lower()
            if len(word) >= 3:
                out.add(word[:-1] if word.endswith("s") and len(word) > 3 else word)
    return frozenset(out)


# -- the tables ---------------------------------------------------------------------------------------------
def replace_files(conn: sqlite3.Connection, forget: Iterable[str], files: dict[str, list[Node]]) -> None:
    """Forget the nodes of ``forget`` paths, add ``files``' nodes, and re-resolve what that affects.

    Runs inside the index update's transaction.
    """
    dirty: set[str] = set()
    for path in forget:
        rows = conn.execute("SELECT id, name FROM graph_nodes WHERE path = ?", (path,)).fetchall()
        if not rows:
            continue
        dirty.update(name for _, name in rows)
        conn.execute("DELETE FROM graph_calls WHERE caller IN (SELECT id FROM graph_nodes WHERE path = ?)", (path,))
        conn.execute("DELETE FROM graph_nodes WHERE path = ?", (path,))

    had_calls = conn.execute("SELECT 1 FROM graph_calls LIMIT 1").fetchone() is not None
    next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM graph_nodes").fetchone()[0]
    added = [(node_id, path, node) for node_id, (path, node) in enumerate(_each(files), next_id)]
    conn.executemany(
        "INSERT INTO graph_nodes (id, path, symbol, name, owner, line, end_line) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (node_id, path, node.symbol, node.name, node.owner, node.line, node.end_line)
            for node_id, path, node in added
        ],
    )
    dirty.update(node.name for _, _, node in added)
    if not dirty:
        return

    called = dirty | {name for _, _, node in added for _, name in node.calls}
    table = _candidates(conn, called)
    # Calls elsewhere whose name was defined or removed here may now mean another symbol, or none.
    stale = (
        _rows_by_name(
            conn,
            "SELECT c.callee, c.caller, c.receiver, c.name, n.path, n.owner FROM graph_calls c "
            "JOIN graph_nodes n ON n.id = c.caller WHERE c.name IN ({})",
            dirty,
        )
        if had_calls
        else []
    )
    memo: dict[tuple[str, str, str, str], int | None] = {}

    def resolved_id(path: str, owner: str, receiver: str, name: str) -> int | None:
        if name not in table:  # most calls are of the language's or a library's functions
            return None
        # Only an own-object call depends on the caller's class; many sites share everything else.
        key = (path, owner if receiver == OWN else "", receiver, name)
        if key not in memo:
            memo[key] = resolve(path, owner, receiver, table.get(name, ()))
        return memo[key]

    updates = []
    for callee, caller, receiver, name, path, owner in stale:
        resolved = resolved_id(path, owner, receiver, name)
        if resolved != callee:
            updates.append((resolved, caller, receiver, name))
    conn.executemany("UPDATE graph_calls SET callee = ? WHERE caller = ? AND receiver = ? AND name = ?", updates)
    conn.executemany(
        "INSERT INTO graph_calls (caller, receiver, name, seq, callee) VALUES (?, ?, ?, ?, ?)",
        [
            (node_id, receiver, name, seq, resolved_id(path, node.owner, receiver, name))
            for node_id, path, node in added
            for (receiver, name), seq in node.calls.items()
        ],
    )


def _each(files: dict[str, list[Node]]) -> Iterable[tuple[str, Node]]:
    for path, nodes in files.items():
        for node in nodes:
            yield path, node


def _candidates(conn: sqlite3.Connection, names: set[str]) -> dict[str, list[Candidate]]:
    table: dict[str, list[Candidate]] = {}
    if len(names) > _BATCH * 4:  # a first index: one pass over every node beats many IN lists
        rows = [row for row in conn.execute("SELECT id, path, name, owner FROM graph_nodes") if row[2] in names]
    else:
        rows = _rows_by_name(conn, "SELECT id, path, name, owner FROM graph_nodes WHERE name IN ({})", names)
    for row in rows:
        table.setdefault(row[2], []).append(Candidate(*row))
    return table


_BATCH = 500  # names per IN (...) list: well under SQLite's limit on host parameters


def _rows_by_name(conn: sqlite3.Connection, sql: str, names: set[str]) -> list[tuple]:
    ordered = sorted(names)
    rows: list[tuple] = []
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start : start + _BATCH]
        rows.extend(conn.execute(sql.format(",".join("?" * len(batch))), batch))
    return rows


# -- reading ------------------------------------------------------------------------------------------------
S = TypeVar("S")  # a ranking.Source: anything with path, symbol, callers and callees


def connect(root: Path, workspace_id: str, sources: list[S], limit: int = MAX_NEIGHBOURS) -> list[S]:
    """``sources`` with their ``callers`` and ``callees`` filled in from the workspace's call graph."""
    if not sources:
        return sources
    conn = store.open_for_reading(root, workspace_id)
    if conn is None:
        return sources
    try:
        out = []
        for source in sources:
            callers, callees = neighbours(conn, source.path, source.symbol, limit)
            out.append(dataclasses.replace(source, callers=tuple(callers), callees=tuple(callees)))
        return out
    except sqlite3.OperationalError:  # an index being rebuilt under us: answer without the graph
        return sources
    finally:
        conn.close()


def neighbours(
    conn: sqlite3.Connection, path: str, symbol: str | None, limit: int = MAX_NEIGHBOURS
) -> tuple[list[dict], list[dict]]:
    """Who calls ``symbol`` in ``path`` and what it calls, each ``{"symbol", "path", "line"}``.

    Callers come code first, tests after, then by path and line; callees in the order the symbol
    first calls them. Both are capped at ``limit``.
    """
    if not symbol:
        return [], []
    row = conn.execute("SELECT id FROM graph_nodes WHERE path = ? AND symbol = ?", (path, symbol)).fetchone()
    if row is None:
        return [], []
    node_id = row[0]
    callers = conn.execute(
        "SELECT DISTINCT n.symbol, n.path, n.line FROM graph_calls c JOIN graph_nodes n ON n.id = c.caller "
        "WHERE c.callee = ? AND c.caller != ?",
        (node_id, node_id),
    ).fetchall()
    callers.sort(key=lambda r: (_is_test_path(r[1]), r[1], r[2], r[0]))
    callees = conn.execute(
        "SELECT n.symbol, n.path, n.line FROM graph_calls c JOIN graph_nodes n ON n.id = c.callee "
        "WHERE c.caller = ? AND c.callee != ? ORDER BY c.seq",
        (node_id, node_id),
    ).fetchall()
    return _as_dicts(callers, limit), _as_dicts(list(dict.fromkeys(callees)), limit)


def _as_dicts(rows: list[tuple], limit: int) -> list[dict]:
    return [{"symbol": symbol, "path": path, "line": line} for symbol, path, line in rows[:limit]]


def _is_test_path(path: str) -> bool:
    """Tests call everything; a reader wants the code that calls it first."""
    folders, _, name = path.lower().rpartition("/")
    return (
        any(part in ("test", "tests", "testing", "__tests__") for part in folders.split("/"))
        or name.startswith("test_")
        or any(marker in name for marker in ("_test.", ".test.", ".spec."))
    )
