"""Split a source file into chunks that follow its definitions where it parses, else by line windows."""

import re
from dataclasses import dataclass

from app.ask.parsing import CLASS, Definition, Parsed, parse

MAX_LINES = 120
WINDOW = 60
OVERLAP = 10
_MIN_BEFORE_BREAK = 30
# A class this short is one chunk (its methods read best with the class around them). Off: it lifted dev
# hit@3 by 0.06, but answers and the call graph then name the class where users want the method.
WHOLE_CLASS_LINES = 0
MEMBER_NAMES = True

# A line that looks like it starts a declaration in most languages; a good place to start a window.
_DECL_RE = re.compile(
    r"^\s*(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:public\s+|private\s+|protected\s+)?"
    r"(?:static\s+|abstract\s+|final\s+|async\s+|override\s+)*"
    r"(?:function\*?|def|class|func|fn|interface|struct|enum|trait|impl|module|type|sub|proc|macro)"
    r"\s+([A-Za-z_$][\w$]*)"
)
_COMMENT_RE = re.compile(r"^\s*(?:#+|//+|/\*+|\*+|--|;+|%+|<!--|\"\"\"|''')\s*(.*?)\s*(?:\*/|-->)?$")


@dataclass(frozen=True)
class Chunk:
    """A span of one file: what is indexed and what is shown as a source."""

    path: str
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    symbol: str | None
    doc: str | None
    text: str
    extra_terms: str = ""  # indexed but not displayed, e.g. a class's method names


def chunk_file(path: str, text: str) -> list[Chunk]:
    """Chunk ``text`` (the content of ``path``) into spans of at most MAX_LINES lines."""
    lines = text.splitlines()
    if not lines:
        return []
    parsed = parse(path, text)
    if parsed is not None:
        return _structured_chunks(path, lines, parsed)
    return _window_chunks(path, lines, 0, len(lines), doc=None)


def _first_doc_line(doc: str | None) -> str | None:
    if not doc:
        return None
    # The summary is the first paragraph; keep it whole so answers read as a sentence.
    paragraph = doc.strip().split("\n\n", 1)[0]
    summary = " ".join(line.strip() for line in paragraph.splitlines()).strip()
    return summary[:300] or None


def _make(path, lines, start, end, symbol, doc, extra="") -> list[Chunk]:
    """Chunks for 0-based half-open [start, end), split into even pieces of at most MAX_LINES."""
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start >= end:
        return []
    pieces = -(-(end - start) // MAX_LINES)
    size = -(-(end - start) // pieces)
    out = []
    for lo in range(start, end, size):
        hi = min(lo + size, end)
        text = "\n".join(lines[lo:hi])
        first = lo == start
        out.append(Chunk(path, lo + 1, hi, symbol, doc, text, extra if first else ""))
    return out


def _gaps(start: int, end: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start, end) not covered by any of ``spans``."""
    out, pos = [], start
    for lo, hi in sorted(spans):
        if lo > pos:
            out.append((pos, lo))
        pos = max(pos, hi)
    if pos < end:
        out.append((pos, end))
    return out


def _structured_chunks(path: str, lines: list[str], parsed: Parsed) -> list[Chunk]:
    chunks: list[Chunk] = []

    def visit(definitions: list[Definition]) -> list[tuple[int, int]]:
        spans = []
        for definition in definitions:
            start, end, name = definition.start, min(definition.end, len(lines)), definition.name
            spans.append((start, end))
            doc = _first_doc_line(definition.doc)
            # A class is its members; so is a function too long to be one chunk that holds definitions
            # of its own (a module wrapped in a closure, a factory).
            small_class = definition.kind == CLASS and end - start <= WHOLE_CLASS_LINES
            if not definition.children or small_class or (definition.kind != CLASS and end - start <= MAX_LINES):
                chunks.extend(_make(path, lines, start, end, name, doc))
                continue
            members = visit(definition.children)
            extra = " ".join(child.name.rsplit(".", 1)[-1] for child in definition.children) if MEMBER_NAMES else ""
            # The header (signature, docstring, leading attributes) is the definition's own chunk; code
            # between or after members gets chunks of its own, still labelled with the definition.
            for number, (lo, hi) in enumerate(_gaps(start, end, members)):
                if number == 0:
                    chunks.extend(_make(path, lines, lo, hi, name, doc, extra))
                else:
                    chunks.extend(_make(path, lines, lo, hi, name, _window_labels(lines, lo, hi)[1]))
        return spans

    top_spans = visit(parsed.definitions)
    module_doc = _first_doc_line(parsed.module_doc)
    for number, (lo, hi) in enumerate(_gaps(0, len(lines), top_spans)):
        # Module-level code outside definitions; the module's documentation labels the top of the file.
        doc = module_doc if number == 0 else None
        chunks.extend(_window_chunks(path, lines, lo, hi, doc=doc, label_symbols=False))
    chunks.sort(key=lambda c: (c.start_line, c.end_line))
    return chunks


def _window_chunks(
    path: str, lines: list[str], start: int, end: int, doc: str | None, label_symbols: bool = True
) -> list[Chunk]:
    """Overlapping windows of about WINDOW lines, cut before declaration-looking lines when possible."""
    out: list[Chunk] = []
    lo = start
    while lo < end:
        hi = min(lo + WINDOW, end)
        at_decl = False
        if hi < end:
            for i in range(hi, lo + _MIN_BEFORE_BREAK, -1):
                if _DECL_RE.match(lines[i]):
                    hi, at_decl = i, True
                    break
        symbol, first_comment = _window_labels(lines, lo, hi)
        out.extend(_make(path, lines, lo, hi, symbol if label_symbols else None, doc or first_comment))
        if hi >= end:
            break
        lo = hi if at_decl else hi - OVERLAP
    return out


def _window_labels(lines: list[str], lo: int, hi: int) -> tuple[str | None, str | None]:
    symbol = comment = None
    for line in lines[lo:hi]:
        if symbol is None and (match := _DECL_RE.match(line)):
            symbol = match.group(1)
        if comment is None and (match := _COMMENT_RE.match(line)) and match.group(1):
            comment = match.group(1)[:300]
        if symbol is not None and comment is not None:
            break
    return symbol, comment
