"""Name, description and entry points a workspace declares in pyproject.toml, setup.cfg, setup.py, package.json,
go.mod or PKG-INFO."""

import configparser
import json
import re
import tomllib
from pathlib import Path

from app.ask import textfiles
from app.ask.overview.parts import MAX_SNIPPET, Facts, Part, first_sentence, line_of, line_span


def manifest(folder: Path, paths: list[str]) -> Facts:
    """Name, description and entry points declared by the top-level manifests (Python, JavaScript, Go)."""
    facts = Facts()
    top = {path for path in paths if "/" not in path}
    readers = (
        ("pyproject.toml", _pyproject),
        ("setup.cfg", _setup_cfg),
        ("setup.py", _setup_py),
        ("package.json", _package_json),
        ("go.mod", _go_mod),
        ("PKG-INFO", _pkg_info),
    )
    for name, reader in readers:
        if name in top:
            text = textfiles.read_text(folder / name)
            if text:
                reader(text, facts)
    return facts


def _pyproject(text: str, facts: Facts) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    project = data.get("project") if isinstance(data.get("project"), dict) else {}
    poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
    poetry = poetry if isinstance(poetry, dict) else {}
    _set_name(facts, project.get("name") or poetry.get("name"), project.get("description") or poetry.get("description"))
    for table, header in (
        (project.get("scripts"), r"^\[project\.scripts\]"),
        (project.get("gui-scripts"), r"^\[project\.gui-scripts\]"),
        (poetry.get("scripts"), r"^\[tool\.poetry\.scripts\]"),
    ):
        if isinstance(table, dict) and table:
            for command, target in table.items():
                target = target.get("reference") if isinstance(target, dict) else target
                if isinstance(target, str):
                    facts.scripts.append((command, target))
            _table_part(text, header, "pyproject.toml", facts)


def _table_part(text: str, header: str, path: str, facts: Facts) -> None:
    start = line_of(text, header)
    if start is None:
        return
    lines = text.splitlines()
    end = start
    while end < len(lines) and lines[end].strip() and not lines[end].startswith("["):
        end += 1
    facts.parts.append(Part(path, start, end, None, path, line_span(text, start, end)))


def _setup_cfg(text: str, facts: Facts) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return
    meta = parser["metadata"] if parser.has_section("metadata") else {}
    _set_name(facts, meta.get("name"), meta.get("description") or meta.get("summary"))
    scripts = parser.get("options.entry_points", "console_scripts", fallback="")
    found = re.findall(r"^[ \t]*([\w.-]+)\s*=\s*([\w.]+:[\w.]+)", scripts, re.MULTILINE)
    if found:
        facts.scripts.extend(found)
        _table_part(text, r"^\[options\.entry_points\]", "setup.cfg", facts)


def _setup_py(text: str, facts: Facts) -> None:
    name = re.search(r"\bname\s*=\s*['\"]([^'\"]+)['\"]", text)
    description = re.search(r"\bdescription\s*=\s*['\"]([^'\"]+)['\"]", text)
    _set_name(facts, name.group(1) if name else None, description.group(1) if description else None)
    start = line_of(text, r"console_scripts")
    if start is None:
        return
    found = re.findall(r"['\"]\s*([\w.-]+)\s*=\s*([\w.]+:[\w.]+)\s*['\"]", text)
    if found:
        facts.scripts.extend(found)
        end = min(len(text.splitlines()), start + max(2, len(found) + 1))
        facts.parts.append(Part("setup.py", start, end, None, "setup.py", line_span(text, start, end)))


def _pkg_info(text: str, facts: Facts) -> None:
    name = re.search(r"^Name:\s*(.+)$", text, re.MULTILINE)
    summary = re.search(r"^Summary:\s*(.+)$", text, re.MULTILINE)
    _set_name(facts, name.group(1).strip() if name else None, summary.group(1).strip() if summary else None)


def _package_json(text: str, facts: Facts) -> None:
    try:
        data = json.loads(text)
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    name, description = data.get("name"), data.get("description")
    _set_name(facts, name if isinstance(name, str) else None, description if isinstance(description, str) else None)
    if isinstance(data.get("main"), str):
        facts.js_main = _relative(data["main"])
    bin_ = data.get("bin")
    if isinstance(bin_, str) and isinstance(name, str):
        facts.js_bin.append((name.rsplit("/", 1)[-1], _relative(bin_)))
    elif isinstance(bin_, dict):
        facts.js_bin.extend((command, _relative(file)) for command, file in bin_.items() if isinstance(file, str))
    lines = text.splitlines()
    keys = [line_of(text, rf'^[ \t]*"{key}"\s*:') for key in ("description", "main", "bin", "exports")]
    end = min(len(lines), max([5, *(line + 2 for line in keys if line)]), MAX_SNIPPET)
    facts.parts.append(Part("package.json", 1, end, None, "package.json", line_span(text, 1, end)))


def _go_mod(text: str, facts: Facts) -> None:
    module = re.search(r"^module\s+(\S+)", text, re.MULTILINE)
    if module:
        facts.go_module = module.group(1).strip('"')
        _set_name(facts, facts.go_module.rstrip("/").rsplit("/", 1)[-1], None)
        end = min(len(text.splitlines()), 20)
        facts.parts.append(Part("go.mod", 1, end, None, "go.mod", line_span(text, 1, end)))


def _set_name(facts: Facts, name: object, description: object) -> None:
    if facts.name is None and isinstance(name, str) and name.strip():
        facts.name = name.strip()
    if facts.description is None and isinstance(description, str) and description.strip():
        facts.description = first_sentence(description.strip(), 300)


def _relative(path: str) -> str:
    path = path.strip()
    while path.startswith("./"):
        path = path[2:]
    return path
