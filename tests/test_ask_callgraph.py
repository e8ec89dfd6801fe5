"""The call graph: call sites by shape, resolution by name, incremental updates, and how answers use it."""

import re
import sqlite3
from pathlib import Path

import pytest

from app.ask import ask, callgraph, update_index
from app.ask.callgraph import BARE, MODULE, OWN, UNNAMED, Candidate, call_sites, file_nodes, resolve
from app.ask.chunking import Chunk
from app.ask.indexdb import index_db_path
from app.ask.llm import build_messages
from app.ask.ranking import Source
from tests.conftest import ADMIN_KEY

CART = '''"""Shopping cart."""
from shop.pricing import total_price as price_of
from shop import tax


class Cart:
    """Items someone means to buy."""

    def __init__(self):
        self.items = []

    def add(self, item):
        """Put an item in the cart."""
        self.items.append(item)
        return self.total()

    def total(self):
        """Sum of the item prices with tax."""
        return tax.apply(price_of(self.items))


def checkout(cart):
    """Pay for the cart."""
    # checkout(cart) in a comment is not a call, nor is "format_receipt()" in a string
    note = "format_receipt()"
    cart.total()
    return format_receipt(cart, note)


def format_receipt(cart, note):
    return note
'''
PRICING = """def total_price(items):
    return sum(item.price for item in items)


def discount(items):
    return total_price(items) * 0.9
"""
TAX = """RATE = 0.2


def apply(amount):
    return round_cents(amount * (1 + RATE))


def round_cents(amount):
    return round(amount, 2)
"""
REPORTS = """from shop.cart import Cart


def apply(value):
    return value


def report(cart_store):
    c = Cart()
    c.add(1)
    apply(2)
    return cart_store.total()
"""
HELPER = "def helper():\n    return 1\n"
FILES = {
    "shop/cart.py": CART,
    "shop/pricing.py": PRICING,
    "shop/tax.py": TAX,
    "admin/reports.py": REPORTS,
    "x/util.py": HELPER,
    "y/util.py": HELPER,
    "y/main.py": "def go():\n    return helper()\n",
    "z/main.py": "def run():\n    return helper()\n",
}


def _ref(symbol: str, path: str, line: int) -> dict:
    return {"symbol": symbol, "path": path, "line": line}


CART_TOTAL = _ref("Cart.total", "shop/cart.py", 17)
REPORT = _ref("report", "admin/reports.py", 8)
# Every node of FILES: (callers, callees).
GRAPH = {
    ("admin/reports.py", "apply"): ([REPORT], []),
    ("admin/reports.py", "report"): (
        [],
        # Cart() is the imported class; c.add(1) names no class, so it is left out; apply(2) is the one
        # beside it, not shop/tax.py's; cart_store.total() is on an object named after the Cart class.
        [_ref("Cart", "shop/cart.py", 6), _ref("apply", "admin/reports.py", 4), CART_TOTAL],
    ),
    ("shop/cart.py", "Cart"): ([REPORT], []),
    ("shop/cart.py", "Cart.__init__"): ([], []),
    ("shop/cart.py", "Cart.add"): ([], [CART_TOTAL]),
    ("shop/cart.py", "Cart.total"): (
        [REPORT, _ref("Cart.add", "shop/cart.py", 12), _ref("checkout", "shop/cart.py", 22)],
        [_ref("apply", "shop/tax.py", 4), _ref("total_price", "shop/pricing.py", 1)],
    ),
    ("shop/cart.py", "checkout"): ([], [CART_TOTAL, _ref("format_receipt", "shop/cart.py", 30)]),
    ("shop/cart.py", "format_receipt"): ([_ref("checkout", "shop/cart.py", 22)], []),
    ("shop/pricing.py", "total_price"): ([CART_TOTAL, _ref("discount", "shop/pricing.py", 5)], []),
    ("shop/pricing.py", "discount"): ([], [_ref("total_price", "shop/pricing.py", 1)]),
    ("shop/tax.py", "apply"): ([CART_TOTAL], [_ref("round_cents", "shop/tax.py", 8)]),
    ("shop/tax.py", "round_cents"): ([_ref("apply", "shop/tax.py", 4)], []),
    ("x/util.py", "helper"): ([], []),
    ("y/util.py", "helper"): ([_ref("go", "y/main.py", 1)], []),
    ("y/main.py", "go"): ([], [_ref("helper", "y/util.py", 1)]),
    # Two helpers, neither beside z/main.py: ambiguous, so no edge rather than a guess.
    ("z/main.py", "run"): ([], []),
}


def _write(folder: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _write(tmp_path / "ws" / "demo", FILES)
    return tmp_path / "ws"


def _graph(root: Path) -> dict[tuple[str, str], tuple[list[dict], list[dict]]]:
    conn = sqlite3.connect(index_db_path(root, "demo"))
    try:
        nodes = conn.execute("SELECT path, symbol FROM graph_nodes").fetchall()
        return {(path, symbol): callgraph.neighbours(conn, path, symbol) for path, symbol in nodes}
    finally:
        conn.close()


def test_python_workspace_graph(root: Path) -> None:
    update_index(root, "demo")
    assert _graph(root) == GRAPH


def test_a_source_showing_a_whole_class_stands_for_its_methods(root: Path) -> None:
    update_index(root, "demo")
    conn = sqlite3.connect(index_db_path(root, "demo"))

    whole = callgraph.neighbours(conn, "shop/cart.py", "Cart", (6, 19))
    header = callgraph.neighbours(conn, "shop/cart.py", "Cart", (6, 7))
    conn.close()

    # Cart.add calling Cart.total is inside; report and checkout call in from outside.
    assert whole == (
        [REPORT, _ref("checkout", "shop/cart.py", 22)],
        [_ref("apply", "shop/tax.py", 4), _ref("total_price", "shop/pricing.py", 1)],
    )
    assert header == GRAPH["shop/cart.py", "Cart"]


def test_removed_file_forgets_its_nodes_and_edges(root: Path) -> None:
    update_index(root, "demo")
    (root / "demo" / "shop" / "tax.py").unlink()
    update_index(root, "demo")

    graph = _graph(root)
    assert not [key for key in graph if key[0] == "shop/tax.py"]
    # tax.apply() now names nothing defined; admin/reports.py's apply is not taken instead.
    assert graph["shop/cart.py", "Cart.total"][1] == [_ref("total_price", "shop/pricing.py", 1)]
    assert graph["admin/reports.py", "apply"] == ([REPORT], [])
    conn = sqlite3.connect(index_db_path(root, "demo"))
    dangling = "SELECT count(*) FROM graph_calls WHERE caller NOT IN (SELECT id FROM graph_nodes)"
    assert conn.execute(dangling).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM graph_nodes WHERE path = 'shop/tax.py'").fetchone() == (0,)
    conn.close()

    _write(root / "demo", {"shop/tax.py": TAX})
    update_index(root, "demo")
    assert _graph(root) == GRAPH


def test_changed_files_re_resolve_calls_elsewhere(root: Path) -> None:
    update_index(root, "demo")
    _write(root / "demo", {"x/util.py": "def other():\n    return 2\n", "shop/pricing.py": "\n\n" + PRICING})
    stats = update_index(root, "demo")

    assert stats.read_paths == ["shop/pricing.py", "x/util.py"]
    graph = _graph(root)
    # The only helper left is y's: z's call now means it. total_price moved down two lines.
    assert graph["z/main.py", "run"] == ([], [_ref("helper", "y/util.py", 1)])
    assert graph["y/util.py", "helper"] == ([_ref("go", "y/main.py", 1), _ref("run", "z/main.py", 1)], [])
    assert graph["shop/cart.py", "Cart.total"][1] == [
        _ref("apply", "shop/tax.py", 4),
        _ref("total_price", "shop/pricing.py", 3),
    ]
    assert graph["x/util.py", "other"] == ([], [])
    assert ("x/util.py", "helper") not in graph


def test_callers_come_code_first_and_are_capped(tmp_path: Path) -> None:
    files = {"lib/core.py": "def target():\n    return 0\n"}
    for number in range(7):
        files[f"tests/test_{number}.py"] = f"def test_{number}():\n    target()\n"
    files["zz/use.py"] = "def use():\n    target()\n"
    _write(tmp_path / "demo", files)
    update_index(tmp_path, "demo")

    callers, callees = _graph(tmp_path)["lib/core.py", "target"]
    assert callers == [_ref("use", "zz/use.py", 1)] + [_ref(f"test_{n}", f"tests/test_{n}.py", 1) for n in range(4)]
    assert callees == []


# -- JavaScript, TypeScript and Go, through the real chunker ------------------------------------------------
JS_GO_FILES = {
    "web/router.js": """// Routes requests to handlers.
import { parseQuery } from './query.js';
import * as log from './log.js';

export class Router {
  constructor() {
    this.routes = [];
  }

  /** Add a route for a path. */
  add(path, handler) {
    this.routes.push({ path, handler });
    return this;
  }

  /** Find the handler of a request and run it. */
  handle(req) {
    const route = this.match(req.url);
    log.info(`handling ${req.url}`);
    return route.handler(req, parseQuery(req.url));
  }

  match(url) {
    // match(url) here is a comment
    return this.routes.find((r) => url.startsWith(r.path));
  }
}

export function createRouter() {
  return new Router();
}
""",
    "web/query.js": """export function parseQuery(url) {
  const parts = url.split('?');
  return decode(parts[1] || '');
}

function decode(text) {
  return Object.fromEntries(new URLSearchParams(text));
}
""",
    "web/log.js": """export function info(message) {
  console.log("info(" + message + ")");
}
""",
    "web/app.ts": """import { createRouter } from './router';

export function main(): void {
  const router = createRouter();
  router.add('/', (req: any) => 'home');
  router.handle({ url: '/?a=1' });
}
""",
    "mux/route.go": """package mux

// Route is one path and its handler.
type Route struct {
	path    string
	handler func(string) string
}

// Match reports whether the route serves path.
func (r *Route) Match(path string) bool {
	return strings.HasPrefix(path, r.path) && r.valid()
}

func (r *Route) valid() bool {
	return r.path != ""
}
""",
    "mux/router.go": """package mux

// Router holds routes.
type Router struct {
	routes []*Route
}

// NewRouter makes an empty router.
func NewRouter() *Router {
	return &Router{}
}

// Serve runs the first route matching path.
func (rt *Router) Serve(path string) string {
	for _, route := range rt.routes {
		if route.Match(path) {
			return route.handler(path)
		}
	}
	return notFound(path)
}

func notFound(path string) string {
	return fmt.Sprintf("no route for %s", path)
}
""",
    "cmd/main.go": """package main

func main() {
	r := mux.NewRouter()
	r.Serve("/")
}
""",
}
JS_GO_GRAPH = {
    ("cmd/main.go", "main"): ([], [_ref("NewRouter", "mux/router.go", 8)]),  # r.Serve(): r names no type
    ("mux/route.go", "Route"): ([], []),
    ("mux/route.go", "Route.Match"): (
        [_ref("Router.Serve", "mux/router.go", 13)],
        [_ref("Route.valid", "mux/route.go", 14)],
    ),
    ("mux/route.go", "Route.valid"): ([_ref("Route.Match", "mux/route.go", 9)], []),
    ("mux/router.go", "Router"): ([], []),
    ("mux/router.go", "NewRouter"): ([_ref("main", "cmd/main.go", 3)], []),
    ("mux/router.go", "Router.Serve"): (
        [],
        [_ref("Route.Match", "mux/route.go", 9), _ref("notFound", "mux/router.go", 23)],
    ),
    ("mux/router.go", "notFound"): ([_ref("Router.Serve", "mux/router.go", 13)], []),
    ("web/app.ts", "main"): (
        [],
        [
            _ref("createRouter", "web/router.js", 29),
            _ref("Router.add", "web/router.js", 10),
            _ref("Router.handle", "web/router.js", 16),
        ],
    ),
    ("web/log.js", "info"): ([_ref("Router.handle", "web/router.js", 16)], []),
    ("web/query.js", "parseQuery"): ([_ref("Router.handle", "web/router.js", 16)], [_ref("decode", "web/query.js", 6)]),
    ("web/query.js", "decode"): ([_ref("parseQuery", "web/query.js", 1)], []),
    ("web/router.js", "Router"): ([_ref("createRouter", "web/router.js", 29)], []),
    ("web/router.js", "Router.constructor"): ([], []),
    ("web/router.js", "Router.add"): ([_ref("main", "web/app.ts", 3)], []),
    ("web/router.js", "Router.handle"): (
        [_ref("main", "web/app.ts", 3)],
        [
            _ref("Router.match", "web/router.js", 23),
            _ref("info", "web/log.js", 1),
            _ref("parseQuery", "web/query.js", 1),
        ],
    ),
    ("web/router.js", "Router.match"): ([_ref("Router.handle", "web/router.js", 16)], []),
    ("web/router.js", "createRouter"): ([_ref("main", "web/app.ts", 3)], [_ref("Router", "web/router.js", 5)]),
}


def test_javascript_typescript_and_go_workspace_graph(tmp_path: Path) -> None:
    # JS_GO_FILES has lines that only look like calls: a comment, a template string, a string, a Go func type.
    other = {"lib/tool.rb": "def helper\n  info(1)\nend\n", "notes.txt": "main() calls info()\n"}
    _write(tmp_path / "demo", {**JS_GO_FILES, **other})
    update_index(tmp_path, "demo")

    # Files in languages without parsed definitions (Ruby here) have no nodes: windows are not functions.
    assert _graph(tmp_path) == JS_GO_GRAPH


def test_javascript_answer_names_callers_and_callees(tmp_path: Path) -> None:
    _write(tmp_path / "demo", JS_GO_FILES)

    result = ask(tmp_path, "demo", "How does the router find the handler of a request and run it?", top_k=1)

    assert result["answer"] == (
        "The most relevant code is `Router.handle` in web/router.js (lines 16–21): Find the handler of a request "
        "and run it. It is called by `main`, and calls `Router.match`, `info` and `parseQuery`."
    )


# -- call sites ---------------------------------------------------------------------------------------------
def test_call_sites_of_python_text() -> None:
    code = 'def f(self):\n    x = self.load(a.b.c(1), g())\n    return (h)(2) + "".join(k.m?.n())\n'
    assert call_sites(code) == [
        (OWN, "load"),
        ("b", "c"),
        (BARE, "g"),
        (UNNAMED, "join"),
        ("m", "n"),
    ]


def test_call_sites_of_javascript_and_go() -> None:
    js = "export function render(el) {\n  if (ok) { return this.draw(el) }\n  return new Widget(el).mount()\n}"
    go = "func (r *Router) Handle(p string) {\n\tfor i := range r.routes {\n\t\tmux.Vars(p)\n\t}\n}"
    assert call_sites(js) == [(OWN, "draw"), (BARE, "Widget"), (UNNAMED, "mount")]
    assert call_sites(go, frozenset({"r"})) == [(BARE, "Handle"), ("mux", "Vars")]


def _chunk(path: str, start: int, symbol: str | None, text: str) -> Chunk:
    return Chunk(path, start, start + text.count("\n"), symbol, None, text)


def test_file_nodes_skip_strings_comments_declarations_and_recursion() -> None:
    js = [
        _chunk("web/app.js", 1, None, "import { draw } from './draw.js'"),
        _chunk(
            "web/app.js",
            3,
            "App.render",
            "render(el) {\n  // render(el) again is recursion\n  const s = `draw(${el})`;\n"
            "  this.layout(el); draw(el, 'paint()'); return this.render(el.child)\n}",
        ),
    ]
    go = [
        _chunk(
            "mux/route.go", 10, "Route.Match", "func (rt *Route) Match(req *Request) bool {\n\treturn rt.match(req)\n}"
        )
    ]

    [render] = file_nodes("web/app.js", js)
    assert (render.symbol, render.owner, render.name, render.line) == ("App.render", "App", "render", 3)
    assert list(render.calls) == [(OWN, "layout"), (BARE, "draw")]
    [match] = file_nodes("mux/route.go", go)
    assert list(match.calls) == [(OWN, "match")]


def test_python_imports_name_the_module_of_a_bare_call() -> None:
    chunks = [
        _chunk("a/b.py", 1, None, "from pkg.util import helper as h, other\nimport pkg.store as st\n"),
        _chunk("a/b.py", 4, "f", "def f():\n    h()\n    other()\n    st.get()\n"),
    ]
    [node] = file_nodes("a/b.py", chunks)
    assert list(node.calls) == [(MODULE + "util", "helper"), (MODULE + "util", "other"), ("store", "get")]


# -- resolution ---------------------------------------------------------------------------------------------
def _candidates(*symbols: str) -> list[Candidate]:
    """``path:Owner.name`` strings to candidates numbered from 1."""
    out = []
    for number, item in enumerate(symbols, 1):
        path, _, symbol = item.partition(":")
        owner, _, name = symbol.rpartition(".")
        out.append(Candidate(number, path, name, owner))
    return out


@pytest.mark.parametrize(
    ("caller", "owner", "receiver", "symbols", "expected"),
    [
        # bare: same file, then same folder, then the only one; top-level only
        ("a/x.go", "", BARE, ["a/x.go:Parse", "a/y.go:Parse", "b/z.go:Parse"], 1),
        ("a/x.go", "", BARE, ["a/y.go:Parse", "b/z.go:Parse"], 1),
        ("a/x.go", "", BARE, ["b/y.go:Parse", "c/z.go:Parse"], None),
        ("a/x.go", "", BARE, ["c/z.go:Parse", "a/x.go:T.Parse"], 1),
        ("a/x.go", "", BARE, ["a/x.go:T.Parse"], None),
        ("a/x.go", "", BARE, [], None),
        # own object: the caller's class first, else a single method elsewhere (inherited)
        ("a/x.ts", "Router", OWN, ["a/x.ts:Route.match", "a/x.ts:Router.match"], 2),
        ("a/x.ts", "Router", OWN, ["b/base.ts:Base.match"], 1),
        ("a/x.ts", "Router", OWN, ["b/base.ts:Base.match", "c/other.ts:Other.match"], None),
        ("a/x.ts", "Router", OWN, ["a/x.ts:match"], None),
        # Class.method(), module.function(), then an object named after its class
        ("a/x.js", "", "Router", ["b/r.js:Router.use", "a/x.js:App.use"], 1),
        ("a/x.js", "", "utils", ["b/utils.js:format", "a/x.js:format"], 1),
        ("a/x.go", "", "mux", ["mux/vars.go:Vars", "other/vars.go:Vars"], 1),
        ("a/x.py", "", "key_store", ["k/s.py:KeyStore.lookup", "u/s.py:UserStore.lookup"], None),
        ("a/x.py", "", "keys", ["k/s.py:KeyStore.lookup", "u/s.py:UserStore.lookup"], 1),
        ("a/x.py", "", "conn", ["k/s.py:KeyStore.execute"], None),
        ("a/x.py", "", "conn", ["a/x.py:Cursor.execute"], 1),
        ("a/x.py", "", UNNAMED, ["a/x.py:Cursor.execute", "a/x.py:Other.execute"], None),
        # imported from a module: that module's definition, else as a bare call
        ("a/x.py", "", MODULE + "store", ["a/x.py:connect", "b/store.py:connect"], 2),
        ("a/x.py", "", MODULE + "pkg", ["pkg/impl.py:connect", "other/impl.py:connect"], 1),
        ("a/x.py", "", MODULE + "gone", ["b/impl.py:connect"], 1),
    ],
)
def test_resolve(caller: str, owner: str, receiver: str, symbols: list[str], expected: int | None) -> None:
    assert resolve(caller, owner, receiver, _candidates(*symbols)) == expected


# -- answers --------------------------------------------------------------------------------------------------
def test_the_answer_says_how_the_best_sources_connect(root: Path) -> None:
    result = ask(root, "demo", "How is the cart total computed with tax?", top_k=3)

    assert result["answer"] == (
        "The most relevant code is `Cart.total` in shop/cart.py (lines 17–19): Sum of the item prices with tax. "
        "It is called by `report`, `Cart.add` and `checkout`, and calls `apply` and `total_price`. "
        "Also see `Cart.add` in shop/cart.py (lines 12–15), which calls `Cart.total` — Put an item in the cart; "
        "`Cart` in shop/cart.py (lines 6–7) — Items someone means to buy."
    )
    top = result["sources"][0]
    assert (top["callers"], top["callees"]) == GRAPH["shop/cart.py", "Cart.total"]
    third = result["sources"][2]
    assert (third["symbol"], third["callers"], third["callees"]) == ("Cart", *GRAPH["shop/cart.py", "Cart"])


def test_only_callers_or_only_callees(root: Path) -> None:
    rounding = ask(root, "demo", "How are prices rounded to cents?", top_k=3)["answer"]
    adding = ask(root, "demo", "How is an item put in the cart?", top_k=1)["answer"]

    assert rounding == (
        "The most relevant code is `round_cents` in shop/tax.py (lines 8–9). It is called by `apply`. "
        "Also see `total_price` in shop/pricing.py (lines 1–2); "
        "`Cart.total` in shop/cart.py (lines 17–19) — Sum of the item prices with tax."
    )
    assert adding == (
        "The most relevant code is `Cart.add` in shop/cart.py (lines 12–15): Put an item in the cart. "
        "It calls `Cart.total`."
    )


def test_api_sources_carry_callers_and_callees(client, workspaces: Path) -> None:
    _write(workspaces / "demo", FILES)
    response = client.post(
        "/api/ask",
        json={"workspaceId": "demo", "question": "How is the cart total computed with tax?", "top_k": 2},
        headers={"x-api-key": ADMIN_KEY},
    )

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"workspaceId", "question", "answer", "sources", "engine"}
    first, second = body["sources"]
    assert {key: first[key] for key in ("path", "symbol", "callers", "callees")} == {
        "path": "shop/cart.py",
        "symbol": "Cart.total",
        "callers": [
            {"symbol": "report", "path": "admin/reports.py", "line": 8},
            {"symbol": "Cart.add", "path": "shop/cart.py", "line": 12},
            {"symbol": "checkout", "path": "shop/cart.py", "line": 22},
        ],
        "callees": [
            {"symbol": "apply", "path": "shop/tax.py", "line": 4},
            {"symbol": "total_price", "path": "shop/pricing.py", "line": 1},
        ],
    }
    assert (second["symbol"], second["callers"], second["callees"]) == (
        "Cart.add",
        [],
        [{"symbol": "Cart.total", "path": "shop/cart.py", "line": 17}],
    )


def test_ask_page_fragment_lists_callers_and_callees(client, auth, workspaces: Path) -> None:
    _write(workspaces / "demo", FILES)
    auth.create_user("alice")
    auth.login()
    response = client.post(
        "/api/ask",
        json={"workspaceId": "demo", "question": "How is the cart total computed with tax?", "top_k": 2},
        headers={"X-CSRFToken": auth.csrf(), "Accept": "text/html"},
    )

    assert response.status_code == 200 and response.mimetype == "text/html"
    lists = re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", response.get_data(as_text=True))
    assert lists == [
        (
            "Called by",
            '<code title="admin/reports.py, line 8">report</code>, '
            '<code title="shop/cart.py, line 12">Cart.add</code>, '
            '<code title="shop/cart.py, line 22">checkout</code>',
        ),
        (
            "Calls",
            '<code title="shop/tax.py, line 4">apply</code>, <code title="shop/pricing.py, line 1">total_price</code>',
        ),
        ("Calls", '<code title="shop/cart.py, line 17">Cart.total</code>'),
    ]


def test_the_language_model_sees_callers_and_callees() -> None:
    caller = {"symbol": "report", "path": "admin/reports.py", "line": 8}
    callee = {"symbol": "apply", "path": "shop/tax.py", "line": 4}
    connected = Source("shop/cart.py", 17, 19, "Cart.total", "def total(self):", 1.0, None, (caller,), (callee,))
    alone = Source("README.md", 1, 2, None, "# Shop", 0.5)

    user = build_messages("Where is tax added?", [connected, alone])[1]["content"]

    assert user == (
        "Question: Where is tax added?\n\nSources:\n\n"
        "[1] shop/cart.py lines 17-19 (Cart.total)\nCalled by: report (admin/reports.py:8)\n"
        "Calls: apply (shop/tax.py:4)\n```\ndef total(self):\n```\n\n"
        "[2] README.md lines 1-2\n```\n# Shop\n```"
    )
