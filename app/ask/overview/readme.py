"""The README's (or docs index's) opening paragraph that says what the project is, with its markup removed."""

import re
from pathlib import Path

from app.ask import textfiles
from app.ask.overview.parts import Part, line_span

_SUMMARY_CHARS = 500
README_RE = re.compile(r"^readme(\.(md|markdown|rst|txt|adoc))?$", re.IGNORECASE)
_DOC_INDEXES = ("docs/index.md", "docs/README.md", "docs/index.rst", "doc/index.rst", "doc/index.md", "doc/README.md")
_RST_UNDERLINE = re.compile(r"^([=\-~*^\"+#`':.])\1{2,}\s*$")
_MARKUP = (
    (re.compile(r"\[!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])\](?:\([^)]*\)|\[[^\]]*\])"), ""),  # markdown badge
    (re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])"), ""),  # markdown image
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # markdown link
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # markdown reference link
    (re.compile(r"`([^`<]+?)\s*<[^>]+>`__?"), r"\1"),  # reST link
    (re.compile(r":[\w:.-]+:`~?([^`]+)`"), r"`\1`"),  # reST role
    (re.compile(r"``(.+?)``"), r"`\1`"),  # reST literal
    (re.compile(r"\|[\w -]+\|"), ""),  # reST substitution
    (re.compile(r"\b(\w+)_\b"), r"\1"),  # reST reference
    (re.compile(r"<[^>]+>"), ""),  # HTML tag
    (re.compile(r"\*\*(.+?)\*\*|__(.+?)__"), r"\1\2"),  # bold
)


def readme_part(folder: Path, paths: list[str]) -> Part | None:
    """The README's (or docs index's) opening paragraph that says what the project is."""
    readmes = sorted((p for p in paths if "/" not in p and README_RE.match(p)), key=lambda p: (len(p), p))
    for path in [*readmes, *(p for p in _DOC_INDEXES if p in paths)]:
        text = textfiles.read_text(folder / path)
        lead = _lead(text) if text else None
        if lead is not None:
            summary, start, end = lead
            return Part(path, 1, end, None, summary, line_span(text, 1, end))
    return None


def _blocks(text: str) -> list[tuple[str, int, int, int]]:
    """(kind, first line, last line, section number) of each paragraph; kind is heading, prose or other."""
    lines = text.splitlines()
    out: list[tuple[str, int, int, int]] = []
    section = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        start = i
        if stripped.startswith(("```", "~~~")):  # fenced code
            fence = stripped[:3]
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                i += 1
            out.append(("other", start + 1, min(i + 1, len(lines)), section))
            i += 1
            continue
        if stripped.startswith(".. ") or stripped.endswith("::"):  # reST directive and its indented body
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i][:1] in " \t"):
                i += 1
            out.append(("other", start + 1, i, section))
            continue
        while i < len(lines) and lines[i].strip():
            i += 1
        block = lines[start:i]
        if _is_heading(block):
            section += 1
            out.append(("heading", start + 1, i, section))
        else:
            out.append(("prose" if _is_prose(block) else "other", start + 1, i, section))
    return out


def _is_heading(block: list[str]) -> bool:
    first = block[0].strip()
    if first.startswith("#") and len(block) <= 2:
        return True
    return len(block) <= 3 and any(_RST_UNDERLINE.match(line.strip()) for line in block[1:] or block)


def _is_prose(block: list[str]) -> bool:
    first = block[0].strip()
    if re.match(r"^([-*+]\s|[|>]|\d+[.)]\s|\[[^\]]*\]:|<)", first) or _RST_UNDERLINE.match(first):
        return False
    return len(_plain(" ".join(block)).split()) >= 3


def _plain(text: str) -> str:
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def _lead(text: str) -> tuple[str, int, int] | None:
    """The first paragraph of the README's opening section that reads as a description, and its lines."""
    blocks = _blocks(text)
    prose = [block for block in blocks if block[0] == "prose"]
    if not prose:
        return None
    # The opening section runs to the second heading when the first one is the title, else to the first.
    titled = any(kind == "heading" and start < prose[0][1] for kind, start, _end, _section in blocks)
    opening = [block for block in prose if block[3] <= (1 if titled else 0)] or prose[:3]
    lines = text.splitlines()
    for min_words in (12, 5):
        for _kind, start, end, _section in opening:
            plain = _plain(" ".join(lines[start - 1 : end]))
            if len(plain.split()) >= min_words:
                # A paragraph leading into a list ends with "...:"; the list is not part of the summary.
                plain = re.sub(r"(?<=[.!?])\s+[^.!?]*:$", "", plain)
                if len(plain) > _SUMMARY_CHARS:
                    plain = plain[: _SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"
                return plain, start, end
    return None
