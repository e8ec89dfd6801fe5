"""Find the definitions of a source file: Python via ``ast``, JavaScript, TypeScript and Go via tree-sitter.

A definition is a function, method, class (or Go type, TypeScript interface) with its qualified name
(``Router.handle``), its lines including the doc comment and decorators above it, and that documentation
as plain text. Chunking turns definitions into chunks; files in other languages get no definitions.
"""

import ast
import functools
import re
import threading
from dataclasses import dataclass, field

FUNCTION, CLASS = "function", "class"


@dataclass
class Definition:
    """One definition; lines are 0-based, ``end`` exclusive, ``start`` includes the doc comment above."""

    name: str
    kind: str
    start: int
    end: int
    doc: str = ""
    children: list["Definition"] = field(default_factory=list)


@dataclass
class Parsed:
    """A file's top-level definitions and the documentation of the file itself."""

    definitions: list[Definition]
    module_doc: str = ""


_TS_LANGUAGES = {
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
}


def language_of(path: str) -> str | None:
    """The language whose definitions ``parse`` understands, from the file name; None for any other."""
    if path.endswith((".py", ".pyi")):
        return "python"
    dot = path.rfind(".")
    return _TS_LANGUAGES.get(path[dot:].lower()) if dot >= 0 else None


def parse(path: str, text: str) -> Parsed | None:
    """The definitions of ``text`` (the content of ``path``), or None when its language is unknown or it
    does not parse."""
    language = language_of(path)
    if language is None:
        return None
    if language == "python":
        return _parse_python(text)
    return _parse_tree_sitter(language, text)


# --- Python ---------------------------------------------------------------------------------------


# CPython 3.11 keeps ast's recursion-depth bookkeeping per interpreter, not per call: two threads parsing at once can
# fail with "SystemError: AST constructor recursion depth mismatch". One parse at a time in this process.
AST_LOCK = threading.Lock()


def _parse_python(text: str) -> Parsed | None:
    try:
        with AST_LOCK:
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = text.splitlines()
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

    def visit(body: list[ast.stmt], prefix: str) -> list[Definition]:
        out = []
        for node in body:
            if not isinstance(node, defs):
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            start = _comment_block_start(lines, first, ("#",))
            doc = ast.get_docstring(node) or _comment_text(lines[start:first])
            name = prefix + node.name
            if isinstance(node, ast.ClassDef):
                out.append(Definition(name, CLASS, start, node.end_lineno, doc, visit(node.body, name + ".")))
            else:
                out.append(Definition(name, FUNCTION, start, node.end_lineno, doc))
        return out

    return Parsed(visit(tree.body, ""), ast.get_docstring(tree) or "")


def _comment_block_start(lines: list[str], first: int, markers: tuple[str, ...]) -> int:
    """Extend a definition starting at line ``first`` upwards over the line comments right above it."""
    while first > 0 and lines[first - 1].lstrip().startswith(markers) and lines[first - 1].lstrip()[:2] != "#!":
        first -= 1
    return first


# --- comments -------------------------------------------------------------------------------------

_TAG_LINE = re.compile(r"^@\w+")


def _comment_text(comment_lines: list[str]) -> str:
    """Plain text of comment lines (``#``, ``//``, ``/* */``, ``/** */``): markers and JSDoc tags removed."""
    out = []
    for line in comment_lines:
        line = line.strip()
        for opener in ("/**", "/*", "//", "#"):
            if line.startswith(opener):
                line = line[len(opener) :].lstrip("/#!:")
                break
        if line.endswith("*/"):
            line = line[:-2]
        line = line.strip()
        if line.startswith("*"):
            line = line.lstrip("*").strip()
        if _TAG_LINE.match(line):
            # @param, @returns and friends describe the signature; keep their words, not the tag.
            line = _TAG_LINE.sub("", line).strip()
        out.append(line)
    return "\n".join(out).strip()


# --- tree-sitter ----------------------------------------------------------------------------------


@functools.cache
def _parser(language: str):  # noqa: ANN202 - tree_sitter is imported lazily
    """A tree-sitter parser; grammars load on first use so that Python-only workspaces never pay for them."""
    import tree_sitter

    if language == "javascript":
        import tree_sitter_javascript as grammar

        capsule = grammar.language()
    elif language == "go":
        import tree_sitter_go as grammar

        capsule = grammar.language()
    else:
        import tree_sitter_typescript as grammar

        capsule = grammar.language_tsx() if language == "tsx" else grammar.language_typescript()
    return tree_sitter.Parser(tree_sitter.Language(capsule))


_FUNCTION_VALUES = {"function_expression", "function", "arrow_function", "generator_function"}
_CLASS_VALUES = {"class", "class_expression"}
_JS_FUNCTIONS = {"function_declaration", "generator_function_declaration", "function_signature"}
_JS_CLASSES = {"class_declaration", "abstract_class_declaration", "interface_declaration", "enum_declaration"}
_JS_MEMBERS = {"method_definition", "method_signature", "abstract_method_signature"}
_JS_WRAPPERS = {"export_statement", "ambient_declaration", "internal_module", "module", "statement_block"}


def _parse_tree_sitter(language: str, text: str) -> Parsed | None:
    source = text.encode("utf-8", "surrogatepass")
    try:
        tree = _parser(language).parse(source)
    except (ValueError, RecursionError):
        return None
    lines = text.splitlines()
    root = tree.root_node
    definitions = _go_definitions(root, lines) if language == "go" else _js_definitions(root, lines, "", depth=0)
    definitions.sort(key=lambda d: d.start)
    module_doc = ""
    first = root.named_children[0] if root.named_children else None
    if first is not None and first.type == "comment" and (not definitions or first.end_point[0] < definitions[0].start):
        module_doc = _comment_text(_node_lines(first, lines))
    return Parsed(definitions, module_doc)


def _node_lines(node, lines: list[str]) -> list[str]:  # noqa: ANN001
    return lines[node.start_point[0] : node.end_point[0] + 1]


def _text(node) -> str:  # noqa: ANN001
    return node.text.decode("utf-8", "replace") if node is not None else ""


_DOC_GAP = 1  # blank lines allowed between a doc comment and its definition (JSDoc often has one)


def _with_comments(node, anchor, lines: list[str]) -> tuple[int, str]:  # noqa: ANN001
    """The first line of ``node`` counting the comment block that ends right above ``anchor``, and its text."""
    comments = []
    previous, line = anchor.prev_sibling, anchor.start_point[0]
    while previous is not None and previous.type == "comment" and previous.end_point[0] >= line - 1 - _DOC_GAP:
        if any(text.strip() for text in lines[previous.end_point[0] + 1 : line]):
            break
        row, column = previous.start_point
        if lines[row][:column].strip():  # a trailing comment of the code before, not a doc comment
            break
        comments.append(previous)
        line = row
        previous = previous.prev_sibling
    start = node.start_point[0]
    if not comments:
        return start, ""
    comments.reverse()
    return min(start, comments[0].start_point[0]), _comment_text([t for c in comments for t in _node_lines(c, lines)])


def _make(name: str, kind: str, node, anchor, lines: list[str], children=None) -> Definition:  # noqa: ANN001
    start, doc = _with_comments(node, anchor, lines)
    return Definition(name, kind, start, node.end_point[0] + 1, doc, children or [])


def _member_name(node) -> str:  # noqa: ANN001
    """``a.b.prototype.c`` -> ``a.b.c``; ``exports.x`` / ``module.exports.x`` -> ``x``."""
    parts = [part for part in _text(node).replace("?.", ".").split(".") if part != "prototype"]
    while parts and parts[0] in ("module", "exports"):
        parts.pop(0)
    return ".".join(part.strip() for part in parts)


def _js_definitions(node, lines: list[str], prefix: str, depth: int) -> list[Definition]:  # noqa: ANN001, C901, PLR0912
    out: list[Definition] = []
    for child in node.named_children:
        kind = child.type
        anchor = child
        if kind in _JS_WRAPPERS:
            inner = child.child_by_field_name("declaration") or (
                child.named_children[-1] if kind == "export_statement" and child.named_children else None
            )
            if kind == "export_statement" and inner is not None and inner.type in (_JS_FUNCTIONS | _JS_CLASSES):
                out.extend(_js_one(inner, child, lines, prefix, depth))
            elif kind in ("internal_module", "module"):
                body = child.child_by_field_name("body")
                name = _text(child.child_by_field_name("name"))
                if body is not None:
                    out.extend(_js_definitions(body, lines, f"{prefix}{name}.", depth + 1))
            elif kind == "ambient_declaration" or (kind == "export_statement" and inner is not None):
                for grandchild in child.named_children:
                    if grandchild.type in (_JS_FUNCTIONS | _JS_CLASSES):
                        out.extend(_js_one(grandchild, child, lines, prefix, depth))
                    elif grandchild.type in ("lexical_declaration", "variable_declaration"):
                        out.extend(_js_variables(grandchild, child, lines, prefix, depth))
            continue
        if kind in (_JS_FUNCTIONS | _JS_CLASSES):
            out.extend(_js_one(child, anchor, lines, prefix, depth))
        elif kind in ("lexical_declaration", "variable_declaration"):
            out.extend(_js_variables(child, anchor, lines, prefix, depth))
        elif kind == "expression_statement":
            expression = child.named_children[0] if child.named_children else None
            if expression is not None and expression.type == "assignment_expression":
                left, right = expression.child_by_field_name("left"), expression.child_by_field_name("right")
                if left is not None and right is not None and left.type in ("member_expression", "identifier"):
                    name = _member_name(left) or _text(right.child_by_field_name("name"))
                    if name:
                        out.extend(_js_value(prefix + name, right, child, anchor, lines, depth))
                    else:  # module.exports = {...}: the object's methods are the module's own
                        out.extend(_js_object_members(_assigned(right), lines, prefix, depth))
    return out


def _js_variables(declaration, anchor, lines: list[str], prefix: str, depth: int) -> list[Definition]:  # noqa: ANN001
    out = []
    declarators = [c for c in declaration.named_children if c.type == "variable_declarator"]
    for declarator in declarators:
        name, value = declarator.child_by_field_name("name"), declarator.child_by_field_name("value")
        if name is None or value is None or name.type != "identifier":
            continue
        # One declarator per statement: the statement (with its comment) is the definition.
        node = declaration if len(declarators) == 1 else declarator
        out.extend(_js_value(prefix + _text(name), value, node, anchor, lines, depth))
    return out


def _assigned(value):  # noqa: ANN001, ANN202
    """The value at the end of a chain of assignments: ``proto = module.exports = {...}`` -> ``{...}``."""
    while value is not None and value.type == "assignment_expression":
        value = value.child_by_field_name("right")
    return value


def _js_object_members(literal, lines: list[str], prefix: str, depth: int) -> list[Definition]:  # noqa: ANN001
    """The methods of an object literal (``get x() {}``, ``f() {}``, ``f: function () {}``, ``f: () => 1``),
    and of the object literals it holds by name; an object without methods (settings, a table) has none."""
    out: list[Definition] = []
    if literal is None or literal.type != "object" or depth > 3:
        return out
    for member in literal.named_children:
        if member.type == "method_definition":
            name = _text(member.child_by_field_name("name"))
            out.append(_js_function(prefix + name, member, member, member, lines, depth + 1))
        elif member.type == "pair":
            key, value = member.child_by_field_name("key"), member.child_by_field_name("value")
            name = _text(key).strip("'\"`")
            if value is None or not name:
                continue
            if value.type in _FUNCTION_VALUES:
                out.append(_js_function(prefix + name, value, member, member, lines, depth + 1))
            elif inner := _js_object_members(value, lines, f"{prefix}{name}.", depth + 1):
                out.append(_make(prefix + name, CLASS, member, member, lines, inner))
    return out


def _js_value(name: str, value, node, anchor, lines: list[str], depth: int) -> list[Definition]:  # noqa: ANN001
    if (literal := _assigned(value)) is not None and literal.type == "object":
        # An object literal with methods (``const utils = {...}``, ``proto = module.exports = {...}``) holds
        # them as a class holds its methods.
        members = _js_object_members(literal, lines, name + ".", depth)
        return [_make(name, CLASS, node, anchor, lines, members)] if members else []
    if value.type in _FUNCTION_VALUES:
        return [_js_function(name, value, node, anchor, lines, depth)]
    if value.type in _CLASS_VALUES:
        body = value.child_by_field_name("body")
        return [_make(name, CLASS, node, anchor, lines, _js_members(body, lines, name + ".", depth))]
    return []


def _js_function(name: str, function, node, anchor, lines: list[str], depth: int) -> Definition:  # noqa: ANN001
    body = function.child_by_field_name("body")
    # Functions nested inside a function are its own business, except in a wrapper (an IIFE, a factory)
    # that holds a whole module: those are reached through the body's definitions.
    children = []
    if body is not None and depth < 3 and body.type == "statement_block":
        children = _js_definitions(body, lines, name + ".", depth + 1)
    return _make(name, FUNCTION, node, anchor, lines, children)


def _js_one(node, anchor, lines: list[str], prefix: str, depth: int) -> list[Definition]:  # noqa: ANN001
    name_node = node.child_by_field_name("name")
    name = prefix + (_text(name_node) or "default")
    if node.type in _JS_FUNCTIONS:
        return [_js_function(name, node, node, anchor, lines, depth)]
    body = node.child_by_field_name("body")
    children = _js_members(body, lines, name + ".", depth) if body is not None else []
    return [_make(name, CLASS, node, anchor, lines, children)]


def _js_members(body, lines: list[str], prefix: str, depth: int) -> list[Definition]:  # noqa: ANN001
    out = []
    if body is None:
        return out
    for member in body.named_children:
        if member.type in _JS_MEMBERS:
            name = _text(member.child_by_field_name("name"))
            out.append(_js_function(prefix + name, member, member, member, lines, depth + 1))
        elif member.type in ("field_definition", "public_field_definition"):
            value = member.child_by_field_name("value")
            name = _text(member.child_by_field_name("property") or member.child_by_field_name("name"))
            if value is not None and value.type in _FUNCTION_VALUES and name:
                out.append(_js_function(prefix + name, value, member, member, lines, depth + 1))
    return out


def _go_definitions(root, lines: list[str]) -> list[Definition]:  # noqa: ANN001
    out = []
    for child in root.named_children:
        if child.type == "function_declaration":
            out.append(_make(_text(child.child_by_field_name("name")), FUNCTION, child, child, lines))
        elif child.type == "method_declaration":
            name = _text(child.child_by_field_name("name"))
            receiver = _go_receiver_type(child.child_by_field_name("receiver"))
            out.append(_make(f"{receiver}.{name}" if receiver else name, FUNCTION, child, child, lines))
        elif child.type == "type_declaration":
            specs = [c for c in child.named_children if c.type in ("type_spec", "type_alias")]
            for spec in specs:
                # ``type X struct {...}`` alone: the declaration and its comment; in a group, each spec.
                node = child if len(specs) == 1 else spec
                kind = CLASS if spec.child_by_field_name("type") is not None else FUNCTION
                out.append(_make(_text(spec.child_by_field_name("name")), kind, node, node, lines))
    return out


def _go_receiver_type(receiver) -> str:  # noqa: ANN001
    """``(c *Command)`` -> ``Command``; generic receivers ``(s *Set[T])`` -> ``Set``."""
    if receiver is None:
        return ""
    text = _text(receiver).strip("()").strip()
    last = text.split()[-1] if text.split() else ""
    return last.lstrip("*").split("[", 1)[0]
