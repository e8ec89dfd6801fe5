"""Python: top-level packages and modules with their docstrings; console scripts, ``__main__``, app factories."""

import re
from pathlib import Path

from app.ask import textfiles
from app.ask.overview.parts import (
    MAX_LISTED,
    MAX_SNIPPET,
    Facts,
    Found,
    Part,
    first_sentence,
    folder_counts,
    head_part,
    is_code_path,
    line_of,
    line_span,
    retext,
)

_DOCSTRING_RE = re.compile(r"^(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*[rRuU]?(\"\"\"|''')(.*?)\1", re.DOTALL)
_MAIN_GUARD_RE = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:", re.MULTILINE)
_FACTORY_RE = re.compile(r"^(?:async\s+)?def\s+((?:create|make|build)_app)\s*\(", re.MULTILINE)
_TOP_DEF_RE = re.compile(r"^(class|def|async\s+def)\s+(\w+)", re.MULTILINE)
_MAX_PACKAGES = 8
# What loads each conventional entry file.
_ENTRY_FILES = {
    "wsgi.py": "a WSGI server (gunicorn, uWSGI) loads {path}",
    "asgi.py": "an ASGI server (uvicorn, hypercorn) loads {path}",
    "manage.py": "{path} runs the project's management commands",
}


def python_parts(folder: Path, sizes: dict[str, int], facts: Facts) -> Found:
    """Top-level packages and modules with their docstrings; console scripts, __main__, factories, wsgi.py."""
    found = Found()
    code = [p for p in sizes if p.endswith(".py") and is_code_path(p)]
    roots = ("", "src/", "lib/")
    packages = sorted(
        {p[: -len("/__init__.py")] for p in code if p.endswith("/__init__.py") and _under_root(p, roots, 2)}
    )
    modules = [p for p in code if _under_root(p, roots, 1) and not p.endswith("__init__.py")]
    wanted = (facts.name or "").lower().replace("-", "_")
    counts = folder_counts(code)
    packages.sort(key=lambda p: (p.rsplit("/", 1)[-1].lower() != wanted, -counts[p], p))
    packages = packages[:_MAX_PACKAGES]
    modules.sort(key=lambda p: (p.rsplit("/", 1)[-1][:-3].lower() != wanted, p))
    texts: dict[str, str] = {}

    def read(path: str) -> str:
        if path not in texts:
            texts[path] = textfiles.read_text(folder / path) or ""
        return texts[path]

    for package in packages:
        init = f"{package}/__init__.py"
        # Only the main package lists its modules: a workspace of many packages would drown in lists.
        modules_of = code if package == packages[0] else []
        found.layout.append(_python_package(package, init, read(init), modules_of, read))
    if packages:
        # The biggest modules of the main package hold most of its code: the next places to read.
        children = [p for p in _children(packages[0], code) if p.endswith(".py") and not p.endswith("__init__.py")]
        children.sort(key=lambda p: (-sizes[p], p))
        found.modules.extend(_python_module(p, read(p)) for p in children[:MAX_LISTED])
    for module in modules[:MAX_LISTED]:
        text = read(module)
        # Beside packages, a loose module without a docstring is usually a script or a config file.
        if text and (not packages or _docstring(text)):
            found.layout.append(_python_module(module, text))

    for command, target in facts.scripts:
        part = _script_entry(command, target, code, read)
        if part:
            found.entries.append(part)
    for path in code:
        name = path.rsplit("/", 1)[-1]
        if name == "__main__.py" and path.count("/") <= 2:
            package = path.rsplit("/", 1)[0].rsplit("/", 1)[-1]
            part = head_part(path, read(path))
            found.entries.append(retext(part, f"`python -m {package}` runs {path}"))
        elif name in _ENTRY_FILES and path.count("/") <= 2:
            part = head_part(path, read(path))
            found.entries.append(retext(part, _ENTRY_FILES[name].format(path=path)))
    for path in dict.fromkeys([*(f"{p}/__init__.py" for p in packages), *modules, *_app_files(code)]):
        text = read(path)
        for match in _FACTORY_RE.finditer(text):
            part = _python_def(path, text, match.group(1))
            if part:
                found.entries.append(retext(part, f"{part.where} (line {part.start_line}) builds the app"))
        guard = line_of(text, _MAIN_GUARD_RE.pattern)
        if guard and path in modules:
            end = min(len(text.splitlines()), guard + 20)
            found.entries.append(
                Part(
                    path,
                    guard,
                    end,
                    None,
                    f"running {path} as a script starts at line {guard}",
                    line_span(text, guard, end),
                )
            )
    return found


def _docstring(text: str) -> tuple[str, int] | None:
    """The module docstring and its last line, read without parsing the whole file."""
    match = _DOCSTRING_RE.match(text)
    if not match or not match.group(2).strip():
        return None
    return match.group(2).strip(), text.count("\n", 0, match.end()) + 1


def _under_root(path: str, roots: tuple[str, ...], depth: int) -> bool:
    return any(path.startswith(root) and path[len(root) :].count("/") == depth - 1 for root in roots)


def _app_files(code: list[str]) -> list[str]:
    """Modules where app factories usually live, one or two levels down."""
    return [p for p in code if p.rsplit("/", 1)[-1] in ("app.py", "factory.py", "application.py") and p.count("/") <= 2]


def _python_package(package: str, init: str, text: str, code: list[str], read) -> Part:
    name = package.rsplit("/", 1)[-1]
    doc = _docstring(text)
    sentence = f"The Python package `{name}` ({init})"
    if doc:
        sentence += f": {first_sentence(doc[0])}"
    public = _public_names(text)
    if public:
        more = f" and {len(public) - MAX_LISTED} more" if len(public) > MAX_LISTED else ""
        sentence = sentence.rstrip(".") + ". It offers " + ", ".join(f"`{n}`" for n in public[:MAX_LISTED]) + more
    listed = []
    children = _children(package, code)
    for child in children[:MAX_LISTED]:
        child_doc = _docstring(read(child))
        summary = f" ({first_sentence(child_doc[0], 100).rstrip('.')})" if child_doc else _defines(read(child))
        listed.append(f"`{_child_name(package, child)}`{summary}")
    if listed:
        more = f" and {len(children) - len(listed)} more" if len(children) > len(listed) else ""
        sentence = sentence.rstrip(".") + ". Its modules: " + ", ".join(listed) + more
    # The head of __init__ shows the docstring and what the package imports and re-exports: its public face.
    end = max(1, min(len(text.splitlines()), MAX_SNIPPET))
    return Part(init, 1, end, None, sentence.rstrip(".") + ".", line_span(text, 1, end), doc[0] if doc else None)


def _public_names(text: str) -> list[str]:
    """What a package offers: the classes and functions it defines itself first, then the rest of ``__all__``."""
    names = _defined(text)
    declared = re.search(r"^__all__\s*(?::[^=]*)?=\s*[\[(](.*?)[\])]", text, re.MULTILINE | re.DOTALL)
    if declared:
        exported = re.findall(r"['\"]([A-Za-z]\w*)['\"]", declared.group(1))
        names = [name for name in names if name in exported] + [name for name in exported if name not in names]
    return list(dict.fromkeys(names))


def _defines(text: str, limit: int = 4) -> str:
    """ " (defines `a`, `b`, …)" for a module without a docstring: its first public classes and functions."""
    names = _defined(text)
    if not names:
        return ""
    more = ", …" if len(names) > limit else ""
    return " (defines " + ", ".join(f"`{name}`" for name in names[:limit]) + more + ")"


def _children(package: str, code: list[str]) -> list[str]:
    """The package's public modules and subpackages, one level down."""
    depth = package.count("/") + 1
    prefix = package + "/"
    return sorted(
        path
        for path in code
        if path.startswith(prefix)
        and not _child_name(package, path).startswith("_")
        and (path.count("/") == depth and not path.endswith("/__init__.py") or _is_subpackage(path, package))
    )


def _child_name(package: str, path: str) -> str:
    return path[len(package) + 1 :].removesuffix("/__init__.py").removesuffix(".py")


def _is_subpackage(path: str, package: str) -> bool:
    return path.endswith("/__init__.py") and path.count("/") == package.count("/") + 2


def _defined(text: str) -> list[str]:
    """The public classes a module defines at its top level, then its public functions, biggest first.

    The biggest definitions are usually the central ones: ``Bottle`` in bottle.py, ``Retrying`` in tenacity.
    """
    found = [(match.start(), match.group(1) == "class", match.group(2)) for match in _TOP_DEF_RE.finditer(text)]
    sized = []
    for number, (start, is_class, name) in enumerate(found):
        end = found[number + 1][0] if number + 1 < len(found) else len(text)
        if not name.startswith("_"):
            sized.append((not is_class, start - end, name))
    return list(dict.fromkeys(name for _kind, _size, name in sorted(sized)))


def _python_module(path: str, text: str) -> Part:
    doc = _docstring(text)
    sentence = f"The module {path}" + (f": {first_sentence(doc[0])}" if doc else ".")
    names = _defined(text)
    if names:
        more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
        sentence = sentence.rstrip(".") + ". It defines " + ", ".join(f"`{n}`" for n in names[:MAX_LISTED]) + more + "."
    end = max(1, min(len(text.splitlines()), MAX_SNIPPET))
    return Part(path, 1, end, None, sentence, line_span(text, 1, end), doc[0] if doc else None)


def _script_entry(command: str, target: str, code: list[str], read) -> Part | None:
    module, _, function = target.partition(":")
    relative = module.replace(".", "/")
    candidates = [f"{root}{relative}{suffix}" for root in ("", "src/", "lib/") for suffix in (".py", "/__init__.py")]
    path = next((c for c in candidates if c in code), None)
    if path is None:
        return None
    text = read(path)
    part = _python_def(path, text, function.split(".")[0]) if function else None
    if part is None:
        part = head_part(path, text)
    return retext(part, f"the command `{command}` runs {part.where} (line {part.start_line})")


def _python_def(path: str, text: str, name: str) -> Part | None:
    """The top-level function or class ``name`` in ``text``, found by its layout (no parse of a big file)."""
    if not name.isidentifier():
        return None
    lines = text.splitlines()
    start = line_of(text, rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(|^class\s+{re.escape(name)}\b")
    if start is None:
        return None
    end = start
    for number in range(start, len(lines)):
        line = lines[number]
        # The definition ends before the next top-level statement; a closing bracket of its signature is not one.
        if line.strip() and not line[:1].isspace() and not line.startswith((")", "]", "#")):
            break
        if line.strip():
            end = number + 1
    while start > 1 and lines[start - 2].startswith("@"):
        start -= 1
    body = "\n".join(lines[start:end])
    doc = re.search(r"^\s+[rRuU]?(\"\"\"|\'\'\')(.*?)\1", body, re.DOTALL | re.MULTILINE)
    summary = first_sentence(doc.group(2)) if doc and doc.group(2).strip() else None
    return Part(path, start, end, name, name, line_span(text, start, end), summary)
