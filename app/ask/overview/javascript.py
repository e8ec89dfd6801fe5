"""JavaScript and TypeScript: the package's main and bin files, what they export, and its code folders."""

import re
from pathlib import Path

from app.ask import textfiles
from app.ask.overview.parts import (
    LICENSE_RE,
    MAX_LISTED,
    Facts,
    Found,
    Part,
    block_end,
    first_sentence,
    folder_counts,
    head_part,
    is_code_path,
    is_main_language,
    line_of,
    line_span,
    retext,
)

_JS_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx")
# Top-level classes and functions, and methods assigned to an object (``app.init = function init() {``).
_DEFINED_RE = re.compile(
    r"^(?:export\s+)?(?:default\s+)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)"
    r"|^(?:export\s+)?(?:default\s+)?(?:async\s+)?function\*?\s+([A-Za-z_$][\w$]*)"
    r"|^([A-Za-z_$][\w$]*\.[A-Za-z_$][\w$]*)\s*=\s*(?:async\s+)?function\b",
    re.MULTILINE,
)
_JS_EXPORT_RE = re.compile(
    r"^[ \t]*(?:module\.)?exports\.([A-Za-z_$][\w$]*)\s*=|^[ \t]*export\s+(?:default\s+)?(?:async\s+)?"
    r"(?:function\*?|class|const|let|var)\s+([A-Za-z_$][\w$]*)|^[ \t]*(?:exports\s*=\s*)?module\.exports\s*=\s*"
    r"([A-Za-z_$][\w$]*)\s*;?[ \t]*$",
    re.MULTILINE,
)


def js_parts(folder: Path, sizes: dict[str, int], facts: Facts) -> Found:
    """The package's main and bin files with what they export, and the files of its code folders."""
    found = Found()
    code = [p for p in sizes if p.endswith(_JS_SUFFIXES) and is_code_path(p) and not _is_declaration(p)]
    if not code or not is_main_language(list(sizes), "js", "package.json"):
        return found
    texts: dict[str, str] = {}

    def read(path: str) -> str:
        if path not in texts:
            texts[path] = textfiles.read_text(folder / path) or ""
        return texts[path]

    main = _resolve(facts.js_main, "", code) if facts.js_main else None
    main = main or next((p for p in ("index.js", "index.ts", "src/index.ts", "src/index.js") if p in code), None)
    for command, file in facts.js_bin:
        if file in code:
            found.entries.append(retext(head_part(file, read(file)), f"the command `{command}` runs {file}"))
    if main:
        # index.js often only re-exports another file (module.exports = require('./lib/x')): follow it.
        real = main
        for _hop in range(3):
            required = re.search(r"module\.exports\s*=\s*require\(\s*['\"]([^'\"]+)['\"]\s*\)", read(real))
            target = _resolve(required.group(1), real, code) if required else None
            if target is None:
                break
            real = target
        sentence = f"the package's main file is {main}" + (f", which re-exports {real}" if real != main else "")
        found.entries.append(retext(head_part(main, read(main)), sentence + _exports_text(read(real))))
        export = _default_export(read(real))
        definition = _js_definition(real, read(real), export) if export else None
        if definition:
            found.entries.append(definition)
    counts = folder_counts(code, depth=1)
    folders = sorted(counts, key=lambda d: (-counts[d], d))
    for top in folders[:3]:
        files = sorted(p for p in code if p.startswith(top + "/"))
        listed = []
        for path in files[:MAX_LISTED]:
            header = _header_comment(read(path))
            summary = f" ({first_sentence(header, 100).rstrip('.')})" if header else _defines(read(path))
            listed.append(path[len(top) + 1 :] + summary)
        more = f" and {len(files) - len(listed)} more" if len(files) > len(listed) else ""
        plural = "s" if len(files) != 1 else ""
        text = f"The folder {top}/ holds {len(files)} script file{plural}: " + ", ".join(listed) + more + "."
        # The biggest file of the folder stands for it: it usually holds the central type.
        by_size = sorted(files, key=lambda p: (-sizes[p], p))[:MAX_LISTED]
        found.layout.append(retext(head_part(by_size[0], read(by_size[0])), text))
        found.modules.extend(retext(head_part(p, read(p)), p) for p in by_size)
    return found


def _defines(text: str, limit: int = 3) -> str:
    """For a file without a header comment, its first classes and functions, as " (defines `a`, `b`)"."""
    found = (next(group for group in match.groups() if group) for match in _DEFINED_RE.finditer(text))
    names = list(dict.fromkeys(name for name in found if name != "module.exports"))
    if not names:
        return ""
    more = ", …" if len(names) > limit else ""
    return " (defines " + ", ".join(f"`{name}`" for name in names[:limit]) + more + ")"


def _is_declaration(path: str) -> bool:
    return path.endswith((".d.ts", ".d.mts", ".d.cts"))


def _resolve(spec: str, importer: str, code: list[str]) -> str | None:
    """The workspace file a relative import or a package.json path names, trying the usual suffixes."""
    base = importer.rsplit("/", 1)[0] if "/" in importer else ""
    parts = [part for part in f"{base}/{spec}".split("/") if part not in ("", ".")]
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
        else:
            resolved.append(part)
    path = "/".join(resolved)
    candidates = [path, *(path + suffix for suffix in _JS_SUFFIXES), *(f"{path}/index{s}" for s in _JS_SUFFIXES)]
    return next((candidate for candidate in candidates if candidate in code), None)


def _exports_text(text: str) -> str:
    names = []
    for match in _JS_EXPORT_RE.finditer(text):
        name = next(group for group in match.groups() if group)
        if name not in names:
            names.append(name)
    if not names:
        return ""
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return f"; it exports {', '.join(f'`{n}`' for n in names[:MAX_LISTED])}{more}"


def _default_export(text: str) -> str | None:
    match = re.search(
        r"^[ \t]*(?:exports\s*=\s*)?module\.exports\s*=\s*([A-Za-z_$][\w$]*)\s*;?[ \t]*$"
        r"|^[ \t]*export\s+default\s+(?:async\s+)?(?:function\*?\s+|class\s+)?([A-Za-z_$][\w$]*)",
        text,
        re.MULTILINE,
    )
    return (match.group(1) or match.group(2)) if match else None


def _js_definition(path: str, text: str, name: str) -> Part | None:
    """Where the file's default export ``name`` is defined in it: a function or a class."""
    start = line_of(text, rf"^[ \t]*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\*?\s+{re.escape(name)}\s*\(")
    start = start or line_of(text, rf"^[ \t]*(?:export\s+)?(?:default\s+)?class\s+{re.escape(name)}\b")
    if start is None:
        return None
    end = block_end(text, start)
    sentence = f"`{name}` in {path} (line {start}) is what it exports"
    return Part(path, start, end, name, sentence, line_span(text, start, end))


def _header_comment(text: str) -> str | None:
    """The file's leading comment, unless it is only a licence notice."""
    match = re.match(r"\s*(?:#![^\n]*\n\s*)?(/\*+(.*?)\*/|(?://[^\n]*\n\s*)+)", text, re.DOTALL)
    if not match:
        return None
    body = match.group(2) if match.group(2) is not None else match.group(1)
    body = re.sub(r"^[ \t]*(?://+|\*+)\s?", "", body, flags=re.MULTILINE).strip()
    if not body or LICENSE_RE.search(body) or len(body.split()) < 4:
        return None
    return " ".join(body.split())
