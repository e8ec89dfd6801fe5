"""The workspace's call graph: which of its functions, methods and classes call which, found at index time.

Nodes are the symbols of chunks (``func``, ``Class``, ``Class.method``) with their path and first line.
Call sites are found in each symbol's own text by shape, outside strings and comments: ``name(``,
``receiver.name(``, ``self.name(`` / ``this.name(`` / a Go receiver. Both are stored per file at index
time (``graph_*`` tables, schema in ``indexdb.py``, written only here). A site becomes an edge when it is
read: only when its name and receiver point at one defined symbol (same class, a module or class of
that name, a receiver named like the class, then the nearest single definition); an ambiguous call
stays unresolved rather than guessed. Resolving on reading keeps every edge true to the files indexed
now: a changed or removed file needs nothing re-resolved elsewhere, and indexing stays cheap.
"""

import dataclasses
import functools
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

from app.ask import indexdb
from app.ask.chunking import Chunk
from app.ask.parsing import language_of

MAX_NEIGHBOURS = 5  # callers and callees listed per source

# How a call site names its receiver in ``graph_calls.receiver``: no receiver, the caller's own object
# (self, cls, this, a Go method's receiver), something without a name (``f().x()``), else the name itself.
# A bare call of a name imported from a module is recorded with that module: "@module".
BARE, OWN, UNNAMED, MODULE = "", ".", "?", "@"

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
# A Go method's receiver, ``func (r *Router) Handle(``: the first line that starts with ``func``.
_GO_RECEIVER_RE = re.compile(r"^[ \t]*func[ \t]*\([ \t]*([A-Za-z_]\w*)[ \t]+\*?[ \t]*[A-Za-z_]", re.M)
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
    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (receiver, name) -> order
    owner: str = field(init=False)  # "Class" of "Class.method"; "" at the top level
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.owner, _, self.name = self.symbol.rpartition(".")


class Candidate(NamedTuple):
    """A defined symbol as resolution sees it."""

    id: int
    path: str
    name: str
    owner: str  # "" for a top-level function or class


def file_nodes(path: str, chunks: Iterable[Chunk]) -> list[Node]:
    """The graph nodes of one file and their call sites, from its chunks; no database involved.

    Only languages whose definitions are parsed have nodes: elsewhere a chunk is a window of lines
    named after its first declaration, and edges from it would be guesses.
    """
    if language_of(path) is None:
        return []
    chunks = list(chunks)
    pieces = [(chunk.symbol, chunk.start_line, chunk.text) for chunk in chunks if chunk.symbol]
    module_code = "\n".join(chunk.text for chunk in chunks if chunk.symbol is None)
    return _nodes(path, pieces, module_code)


def _nodes(path: str, pieces: list[tuple[str, int, str]], module_code: str) -> list[Node]:
    """Nodes from ``(symbol, first line, own text)`` pieces; ``module_code`` is the code outside them."""
    python = language_of(path) == "python"
    noise = _HASH_NOISE_RE if python else _SLASH_NOISE_RE  # JavaScript, TypeScript and Go: // and /* */
    imported, modules = _python_imports(module_code) if python else ({}, {})
    go = path.endswith(".go")
    nodes: dict[str, Node] = {}
    for symbol, line, text in pieces:
        node = nodes.get(symbol)
        if node is None:
            node = nodes[symbol] = Node(symbol, line)
        node.line = min(node.line, line)
        own = _OWN_NAMES
        if go and node.owner and (receiver := _GO_RECEIVER_RE.search(text)):
            own = _OWN_NAMES | {receiver.group(1)}
        for receiver, name in call_sites(noise.sub('""', text), own):
            if receiver == BARE and name in imported:
                receiver, name = imported[name]
            elif receiver in modules:
                receiver = modules[receiver]
            if name == node.name and receiver in (BARE, OWN):
                continue  # its own definition line, or recursion: says nothing about connections
            node.calls.setdefault((receiver, name), len(node.calls))
    return list(nodes.values())


def _python_imports(module_code: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """What a module's top-level imports say about names: ``from m import f as g`` makes ``g()`` a call
    of ``f`` from module ``m``, and ``import pkg.mod as x`` makes ``x.f()`` a call on ``mod``."""
    names: dict[str, tuple[str, str]] = {}
    modules: dict[str, str] = {}
    if "import" not in module_code:
        return names, modules
    for statement in _PYTHON_IMPORT_RE.finditer(module_code):
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
class _Group:
    """Candidates indexed by file and folder, for picking the nearest single one."""

    def __init__(self, items: list[Candidate]) -> None:
        self.items = items
        self._by_path: dict[str, list[Candidate]] | None = None
        self._by_folder: dict[str, list[Candidate]] = {}

    @property
    def by_path(self) -> dict[str, list[Candidate]]:
        if self._by_path is None:
            self._by_path = {}
            for item in self.items:
                self._by_path.setdefault(item.path, []).append(item)
                self._by_folder.setdefault(_folder(item.path), []).append(item)
        return self._by_path

    def nearest(self, caller_path: str) -> int | None:
        """Same file, then same folder, then the whole workspace: the first that has any must have one."""
        if len(self.items) <= 1:  # most names are defined once: no need to look closer
            return self.items[0].id if self.items else None
        tier = self.by_path.get(caller_path) or self._by_folder.get(_folder(caller_path)) or self.items
        return tier[0].id if len(tier) == 1 else None


_NOWHERE = _Group([])


class Namesakes:
    """The definitions sharing one name, grouped (each grouping built once, when first asked for)."""

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        candidates = list(candidates)
        self.top = _Group([c for c in candidates if not c.owner])
        self.methods = _Group([c for c in candidates if c.owner])
        self._index: dict[str, dict[str, list[Candidate]]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}

    def _lookup(self, kind: str, key: str) -> _Group:
        group = self._groups.get((kind, key))
        if group is None:
            index = self._index.get(kind)
            if index is None:
                index = self._index[kind] = self._build(kind)
            group = self._groups[kind, key] = _Group(index.get(key, []))
        return group

    def _build(self, kind: str) -> dict[str, list[Candidate]]:
        index: dict[str, list[Candidate]] = {}
        pool = self.top.items if kind == "module" else self.methods.items
        for c in pool:
            if kind == "owner":
                keys: Iterable[str] = (c.owner,)
            elif kind == "class":
                keys = (c.owner.rpartition(".")[2],)
            elif kind == "module":
                keys = set(_module_names(c.path))
            else:
                keys = _words(c.owner.rpartition(".")[2])
            for key in keys:
                index.setdefault(key, []).append(c)
        return index

    def of_owner(self, owner: str) -> _Group:
        return self._lookup("owner", owner)

    def of_class(self, name: str) -> _Group:
        return self._lookup("class", name)

    def in_module(self, module: str) -> _Group:
        return self._lookup("module", module)

    def named_like(self, receiver: str) -> _Group:
        """Methods of classes that share a word with the receiver's name."""
        group = self._groups.get(("like", receiver))
        if group is None:
            ids: dict[int, Candidate] = {}
            for word in sorted(_words(receiver)):
                ids.update((c.id, c) for c in self._lookup("word", word).items)
            group = self._groups["like", receiver] = _Group(sorted(ids.values(), key=lambda c: c.id))
        return group


def resolve(
    caller_path: str, caller_owner: str, receiver: str, candidates: "Namesakes | Sequence[Candidate]"
) -> int | None:
    """The id of the one symbol a call means, or None when no definition or several fit equally well.

    ``candidates`` are the defined symbols with the called name. Where several fit, the nearest
    single one wins: same file, then same folder, then the only one in the workspace.
    """
    namesakes = candidates if isinstance(candidates, Namesakes) else Namesakes(candidates)
    group = fitting(namesakes, caller_owner, receiver)
    return group.nearest(caller_path) if group is not None else _beside(namesakes, caller_path)


def fitting(namesakes: Namesakes, caller_owner: str, receiver: str) -> _Group | None:
    """The definitions a call could mean, whatever file it is in; None when nothing narrows them."""
    if receiver.startswith(MODULE):
        in_module = namesakes.in_module(receiver[len(MODULE) :])
        return in_module if in_module.items else namesakes.top
    if receiver == BARE:
        return namesakes.top
    if receiver == OWN:
        same_class = namesakes.of_owner(caller_owner) if caller_owner else _NOWHERE
        return same_class if same_class.items else namesakes.methods
    if receiver != UNNAMED:
        # Class.method(), module.function(), then an object named after its class (store.lookup()
        # on a KeyStore): each more of a guess than the one before, so the first that fits decides.
        for group in (namesakes.of_class, namesakes.in_module, namesakes.named_like):
            found = group(receiver)
            if found.items:
                return found
    return None


def _beside(namesakes: Namesakes, caller_path: str) -> int | None:
    """Nothing says which class: only a method defined right beside the caller is a safe bet."""
    beside = namesakes.methods.by_path.get(caller_path, ())
    return beside[0].id if len(beside) == 1 else None


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
    """Forget the nodes and call sites of ``forget`` paths and add those of ``files``.

    Runs inside the index update's transaction. Calls are resolved when read, against the nodes of
    that moment, so a changed file needs nothing re-resolved elsewhere.
    """
    for path in forget:
        conn.execute("DELETE FROM graph_calls WHERE caller IN (SELECT id FROM graph_nodes WHERE path = ?)", (path,))
        conn.execute("DELETE FROM graph_nodes WHERE path = ?", (path,))
    next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM graph_nodes").fetchone()[0]
    added = [(node_id, path, node) for node_id, (path, node) in enumerate(_each(files), next_id)]
    conn.executemany(
        "INSERT INTO graph_nodes (id, path, symbol, name, owner, line) VALUES (?, ?, ?, ?, ?, ?)",
        [(node_id, path, node.symbol, node.name, node.owner, node.line) for node_id, path, node in added],
    )
    conn.executemany(
        "INSERT INTO graph_calls (caller, receiver, name, seq) VALUES (?, ?, ?, ?)",
        [(node_id, receiver, name, seq) for node_id, _, node in added for (receiver, name), seq in node.calls.items()],
    )


def _each(files: dict[str, list[Node]]) -> Iterable[tuple[str, Node]]:
    for path, nodes in files.items():
        for node in nodes:
            yield path, node


class _Resolver:
    """Resolves call sites against the definitions of the names it has loaded (``load``, once each)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.nodes: dict[int, tuple[str, str, int]] = {}  # id -> (symbol, path, line)
        self._namesakes: dict[str, Namesakes | None] = {}
        self._fitting: dict[tuple[str, str, str], _Group | None] = {}

    def load(self, names: Iterable[str]) -> None:
        new = set(names) - self._namesakes.keys()
        defined: dict[str, list[Candidate]] = {}
        sql = "SELECT id, path, name, owner, symbol, line FROM graph_nodes WHERE name IN ({})"
        for node_id, path, name, owner, symbol, line in _rows_by_name(self._conn, sql, new):
            defined.setdefault(name, []).append(Candidate(node_id, path, name, owner))
            self.nodes[node_id] = (symbol, path, line)
        for name in new:
            self._namesakes[name] = Namesakes(defined[name]) if name in defined else None

    def __call__(self, path: str, owner: str, receiver: str, name: str) -> int | None:
        namesakes = self._namesakes.get(name)
        if namesakes is None:
            return None
        # What fits does not depend on the caller's file, only which of it is nearest: many callers
        # in many files share the first, expensive step.
        key = (name, receiver, owner if receiver == OWN else "")
        if key not in self._fitting:
            self._fitting[key] = fitting(namesakes, owner, receiver)
        group = self._fitting[key]
        return group.nearest(path) if group is not None else _beside(namesakes, path)


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
    conn = indexdb.open_for_reading(root, workspace_id)
    if conn is None:
        return sources
    try:
        out, resolver = [], _Resolver(conn)  # sources share names: each is looked up once
        for source in sources:
            lines = (source.start_line, source.end_line)
            callers, callees = neighbours(conn, source.path, source.symbol, lines, limit, resolver)
            out.append(dataclasses.replace(source, callers=tuple(callers), callees=tuple(callees)))
        return out
    except sqlite3.OperationalError:  # an index being rebuilt under us: answer without the graph
        return sources
    finally:
        conn.close()


def neighbours(
    conn: sqlite3.Connection,
    path: str,
    symbol: str | None,
    lines: tuple[int, int] | None = None,
    limit: int = MAX_NEIGHBOURS,
    resolver: _Resolver | None = None,
) -> tuple[list[dict], list[dict]]:
    """Who calls ``symbol`` in ``path`` and what it calls, each ``{"symbol", "path", "line"}``.

    When a source shows a whole class (``lines``, its first and last line, hold its methods), the
    class stands for its members: callers of any of them, and what any of them calls, outside it.
    Callers come code first, tests after, then by path and line; callees in the order they are first
    called. Both are capped at ``limit``.
    """
    if not symbol:
        return [], []
    first, last = lines or (0, 0)
    members = {
        node_id: (name, owner, line)
        for node_id, full, name, owner, line in conn.execute(
            "SELECT id, symbol, name, owner, line FROM graph_nodes "
            "WHERE path = ? AND (symbol = ? OR substr(symbol, 1, ?) = ?)",
            (path, symbol, len(symbol) + 1, symbol + "."),
        )
        if full == symbol or first <= line <= last
    }
    if not members:
        return [], []
    inside = ",".join("?" * len(members))
    sites = conn.execute(
        f"SELECT caller, receiver, name FROM graph_calls WHERE caller IN ({inside}) ORDER BY seq",  # noqa: S608
        list(members),
    ).fetchall()
    sites.sort(key=lambda site: members[site[0]][2])  # by member, each in call order (a stable sort)
    names = {name for name, _, _ in members.values()}
    incoming = _rows_by_name(
        conn,
        "SELECT c.caller, c.receiver, c.name, n.path, n.owner, n.symbol, n.line FROM graph_calls c "
        "JOIN graph_nodes n ON n.id = c.caller WHERE c.name IN ({})",
        names,
    )
    resolver = resolver or _Resolver(conn)
    resolver.load(names | {name for _, _, name in sites})

    callees: dict[int, None] = {}
    for caller, receiver, name in sites:
        _, owner, _ = members[caller]
        callee = resolver(path, owner, receiver, name)
        if callee is not None and callee not in members:
            callees.setdefault(callee)
    callers = set()
    for caller, receiver, name, caller_path, owner, caller_symbol, line in incoming:
        if caller not in members and resolver(caller_path, owner, receiver, name) in members:
            callers.add((caller_symbol, caller_path, line))
    ordered = sorted(callers, key=lambda r: (_is_test_path(r[1]), r[1], r[2], r[0]))
    return _as_dicts(ordered, limit), _as_dicts([resolver.nodes[callee] for callee in callees], limit)


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
