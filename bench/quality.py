"""Ask quality on code the ranking never saw: hit@3 and MRR@5 per codebase, dev and test split.

Usage: python bench/quality.py [--split dev|test|all] [--codebase NAME ...] [--misses] [--baseline]
                               [--json FILE] [--cache DIR]

Question files live in bench/quality/{dev,test}/<codebase>.json; bench/quality/README.md gives the format.
Each codebase's pinned source is fetched once into the cache (pip download / npm pack / apt-get
download), imported as one workspace into a temp folder with the app's own importer, and every
question goes through ``app.ask.engine.ask`` exactly as ``POST /api/ask`` calls it. ``--baseline``
also scores plain BM25 over 50-line windows of the same files: the honest reference.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.ask import textfiles  # noqa: E402 - after the path fix above
from app.ask.engine import ask  # noqa: E402
from app.ask.importer import import_workspace  # noqa: E402
from app.ask.index import update_index  # noqa: E402
from app.ask.workspaces import is_valid_workspace_id  # noqa: E402

QUALITY_DIR = ROOT / "bench" / "quality"
SPLITS = ("dev", "test")
DEFAULT_CACHE = Path.home() / ".cache" / "askgate-quality"
TOP_K = 5
HIT_AT = 3
MAX_HIT_LINES = 150  # a source longer than this is too vague to count as finding the definition
MIN_QUESTIONS, MAX_QUESTIONS = 9, 10
NAME_CHECK_LINES = 10  # the symbol's own name must appear this near the top of its range
WINDOW, WINDOW_STEP = 50, 25  # the baseline's line windows


class BadQuestionFile(ValueError):
    """A question file that does not follow the format; the message names the file and the question."""


@dataclass
class Codebase:
    split: str
    file: Path
    name: str
    language: str
    source: dict
    questions: list[dict]
    results: list[dict] = field(default_factory=list)


# --- loading and validating question files -------------------------------------------------------


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise BadQuestionFile(f"{where}: {message}")


def _check_keys(data: object, where: str, required: set[str]) -> None:
    _check(isinstance(data, dict), where, "must be a JSON object")
    missing, unknown = required - data.keys(), data.keys() - required
    _check(not missing, where, f"missing {', '.join(sorted(missing))}")
    _check(not unknown, where, f"unknown key {', '.join(sorted(unknown))}")


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _validate_source(source: object, where: str) -> None:
    where = f"{where}: source"
    kind = source.get("kind") if isinstance(source, dict) else None
    _check(kind in ("pypi", "npm", "debian"), where, "kind must be pypi, npm or debian")
    _check_keys(source, where, {"kind", "name", "version"} | ({"subdir"} if kind == "debian" else set()))
    for key in source:
        _check(_nonempty_str(source[key]), where, f"{key} must be a non-empty string")


def _validate_expect(entry: object, where: str) -> None:
    _check_keys(entry, where, {"path", "symbol", "lines"})
    path = entry["path"]
    _check(_nonempty_str(path), where, "path must be a non-empty string")
    _check(not path.startswith("/") and ".." not in path.split("/"), where, f"path {path!r} must be relative")
    _check(_nonempty_str(entry["symbol"]), where, "symbol must be a non-empty string")
    lines = entry["lines"]
    _check(
        isinstance(lines, list) and len(lines) == 2 and all(type(n) is int for n in lines),
        where,
        "lines must be [first, last]",
    )
    _check(1 <= lines[0] <= lines[1], where, f"lines {lines} must satisfy 1 <= first <= last")


def validate(data: object, file: Path, split: str) -> Codebase:
    """The codebase a parsed question file describes, or BadQuestionFile naming what is wrong."""
    where = str(file.relative_to(ROOT) if file.is_relative_to(ROOT) else file)
    _check_keys(data, where, {"codebase", "language", "source", "questions"})
    name = data["codebase"]
    _check(name == file.stem, where, f"codebase {name!r} must equal the file name {file.stem!r}")
    _check(is_valid_workspace_id(name), where, f"codebase {name!r} is not a valid workspace id")
    _check(_nonempty_str(data["language"]), where, "language must be a non-empty string")
    _validate_source(data["source"], where)
    questions = data["questions"]
    _check(isinstance(questions, list), where, "questions must be a list")
    _check(
        MIN_QUESTIONS <= len(questions) <= MAX_QUESTIONS,
        where,
        f"has {len(questions)} questions, needs {MIN_QUESTIONS} to {MAX_QUESTIONS}",
    )
    seen = set()
    for number, item in enumerate(questions, 1):
        at = f"{where}: question {number}"
        _check_keys(item, at, {"question", "expect"})
        _check(_nonempty_str(item["question"]), at, "question must be a non-empty string")
        _check(item["question"] not in seen, at, "the same question is asked twice")
        seen.add(item["question"])
        _check(isinstance(item["expect"], list) and item["expect"], at, "expect must be a non-empty list")
        for entry_number, entry in enumerate(item["expect"], 1):
            _validate_expect(entry, f"{at}, expect {entry_number}")
    return Codebase(split, file, name, data["language"], data["source"], questions)


def load_codebases(splits: tuple[str, ...] = SPLITS, quality_dir: Path = QUALITY_DIR) -> list[Codebase]:
    """Every question file of ``splits``, validated, dev before test and by name within a split."""
    codebases = []
    for split in splits:
        for file in sorted((quality_dir / split).glob("*.json")):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadQuestionFile(f"{file}: not valid JSON ({exc})") from None
            codebases.append(validate(data, file, split))
    return codebases


def leaked_names(question: str, expect: list[dict]) -> list[str]:
    """Name parts (>= 4 chars) of the expected symbols that the question gives away as whole words."""
    words = set(re.findall(r"\w+", question.lower()))
    parts = {part for entry in expect for part in re.split(r"\W+", entry["symbol"]) if len(part) >= 4}
    return sorted(part for part in parts if part.lower() in words)


# --- fetching pinned sources into the cache --------------------------------------------------------


class FetchError(RuntimeError):
    """A source could not be fetched; the message says what to do."""


def _reason(output: str) -> str:
    """The line of a tool's output that says why it failed (npm also prints an error code and a log path)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not re.search(r"error code \w+$|complete log", line)]
    errors = [line for line in lines if re.search(r"error|unable|not found", line, re.IGNORECASE)]
    return (errors or lines or ["no output"])[0][:300]


def _run(command: list[str], cwd: Path, spec: str, hint: str = "") -> str:
    if shutil.which(command[0]) is None:
        raise FetchError(f"{command[0]} is not installed; it is needed to fetch {spec}")
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise FetchError(f"{' '.join(command)} failed: {_reason(done.stderr or done.stdout)}{hint}")
    return done.stdout


def _unpack_stripped(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz/.tgz/.zip into ``dest``, dropping its single top folder."""
    scratch = dest.with_name(dest.name + ".unpack")
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(scratch)  # noqa: S202 - zipfile drops '..' and absolute member names
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(scratch, filter="data")
    entries = list(scratch.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch
    os.rename(top, dest)
    shutil.rmtree(scratch, ignore_errors=True)


def _fetch_pypi(source: dict, work: Path, dest: Path) -> None:
    spec = f"{source['name']}=={source['version']}"
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
    _run([*pip, "--dest", ".", spec], work, spec)
    archives = [p for p in work.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    if len(archives) != 1:
        raise FetchError(f"pip download {spec} gave {len(archives)} source archives, expected one")
    _unpack_stripped(archives[0], dest)


def _fetch_npm(source: dict, work: Path, dest: Path) -> None:
    spec = f"{source['name']}@{source['version']}"
    tarball = _run(["npm", "pack", "--loglevel=error", spec], work, spec).strip().splitlines()[-1]
    _unpack_stripped(work / tarball, dest)


def _fetch_debian(source: dict, work: Path, dest: Path) -> None:
    spec = f"{source['name']}={source['version']}"
    _run(["apt-get", "download", spec], work, spec, hint=" (run apt-get update first)")
    debs = list(work.glob("*.deb"))
    _run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")], work, spec)
    subdir = work / "root" / source["subdir"].strip("/")
    if not subdir.is_dir():
        raise FetchError(f"{spec} has no folder {source['subdir']}")
    os.rename(subdir, dest)


_FETCHERS = {"pypi": _fetch_pypi, "npm": _fetch_npm, "debian": _fetch_debian}


def cache_path(cache: Path, source: dict) -> Path:
    """Where ``source`` lives in the cache once fetched."""
    slug = f"{source['name']}-{source['version']}".replace("/", "+").replace("@", "")
    return cache / source["kind"] / slug


def cached_source(cache: Path, source: dict) -> Path:
    """The folder of ``source`` in the cache, fetched first if absent (a partial fetch never counts)."""
    dest = cache_path(cache, source)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent) as work:
        staged = Path(work) / "tree"
        _FETCHERS[source["kind"]](source, Path(work), staged)
        os.rename(staged, dest)  # atomic: the folder exists only once it is complete
    return dest


def sanity_problems(codebase: Codebase, folder: Path) -> list[str]:
    """Expected entries that do not match the downloaded code (missing file, lines off the symbol)."""
    problems = []
    for number, item in enumerate(codebase.questions, 1):
        for entry in item["expect"]:
            where = f"{codebase.split}/{codebase.file.name}: question {number}: {entry['path']}"
            path = folder / entry["path"]
            if not path.is_file():
                problems.append(f"{where}: no such file in {codebase.source['name']} {codebase.source['version']}")
                continue
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            first, last = entry["lines"]
            if last > len(lines):
                problems.append(f"{where}: lines {first}-{last} run past the end ({len(lines)} lines)")
                continue
            name = re.split(r"\W+", entry["symbol"].strip("()*"))[-1]
            head = lines[first - 1 : min(last, first - 1 + NAME_CHECK_LINES)]
            if not any(re.search(rf"\b{re.escape(name)}\b", line) for line in head):
                problems.append(f"{where}: {name!r} is not on the first lines of {first}-{last}")
    return problems


# --- asking and grading ----------------------------------------------------------------------------


def is_hit(source: dict, expect: list[dict]) -> bool:
    """The grading rule: at most 150 lines, the expected path, overlapping the expected lines."""
    start, end = source["start_line"], source["end_line"]
    if end - start + 1 > MAX_HIT_LINES:
        return False
    return any(
        source["path"] == entry["path"] and start <= entry["lines"][1] and entry["lines"][0] <= end for entry in expect
    )


def first_hit_rank(sources: list[dict], expect: list[dict]) -> int | None:
    """1-based rank of the first hit within the top 5, or None."""
    return next((rank for rank, source in enumerate(sources[:TOP_K], 1) if is_hit(source, expect)), None)


def scores(ranks: list[int | None]) -> tuple[float, float]:
    """(hit@3, MRR@5) of the first-hit ranks of some questions."""
    if not ranks:
        return 0.0, 0.0
    hits = sum(1 for rank in ranks if rank is not None and rank <= HIT_AT)
    return hits / len(ranks), sum(1 / rank for rank in ranks if rank is not None) / len(ranks)


def progress(message: str, keep: bool = False) -> None:
    """A status line on stderr, rewritten in place on a terminal; elsewhere only lines to ``keep``."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{message}" + ("\n" if keep else ""))
        sys.stderr.flush()
    elif keep:
        print(message, file=sys.stderr, flush=True)


def index_workspace(workspaces: Path, codebase: Codebase, folder: Path) -> None:
    """Import ``folder`` as one workspace with the app's importer and build its index."""
    import_workspace(workspaces, codebase.name, folder)

    def report(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            progress(f"indexing {codebase.name}: {done}/{total} files")

    stats = update_index(workspaces, codebase.name, report)
    progress(f"indexed {codebase.name}: {stats.files_seen} files, {stats.chunks} chunks", keep=True)


def _brief(source: dict) -> dict:
    keys = ("path", "start_line", "end_line", "symbol")
    return {key: source.get(key) for key in keys}


def evaluate(codebase: Codebase, workspaces: Path, baseline: "Baseline | None") -> None:
    """Ask every question of ``codebase`` and keep what came back and where the first hit was."""
    for item in codebase.questions:
        sources = ask(workspaces, codebase.name, item["question"], top_k=TOP_K)["sources"]
        result = {
            "split": codebase.split,
            "codebase": codebase.name,
            "question": item["question"],
            "expect": item["expect"],
            "rank": first_hit_rank(sources, item["expect"]),
            "sources": [_brief(source) for source in sources],
        }
        if baseline is not None:
            result["baseline_rank"] = first_hit_rank(baseline.search(item["question"]), item["expect"])
        codebase.results.append(result)


# --- the baseline: BM25 over overlapping 50-line windows -------------------------------------------


# English function words, dropped from questions as any BM25 setup does (Lucene's English analyzer, say).
_STOPWORD_TEXT = (
    "a an and are as at be but by can could do does for from has have how i if in into is it its may my not of "
    "on or should so than that the their then there these they this to was we what when where which while who "
    "why will with would you your"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _words(text: str) -> list[str]:
    """Lowercase words, identifiers split at underscores and camelCase humps."""
    parts = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", text)
    return [part.lower() for part in parts]


class Baseline:
    """Plain BM25 (SQLite FTS5, porter stemming) over 50-line windows that overlap by 25 lines."""

    def __init__(self, folder: Path) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(
            "CREATE VIRTUAL TABLE windows USING fts5(path UNINDEXED, first UNINDEXED, last UNINDEXED, body, "
            "tokenize='porter ascii')"
        )
        for path, _size, _mtime in textfiles.scan(folder):
            text = textfiles.read_text(folder / path)
            lines = text.splitlines() if text else []
            for start in range(0, max(len(lines) - WINDOW_STEP, 1), WINDOW_STEP):
                window = lines[start : start + WINDOW]
                if window:
                    row = (path, start + 1, start + len(window), " ".join(_words("\n".join(window))))
                    self.conn.execute("INSERT INTO windows VALUES (?, ?, ?, ?)", row)

    def search(self, question: str) -> list[dict]:
        terms = sorted(set(_words(question)) - _STOPWORDS)
        if not terms:
            return []
        query = " OR ".join(f'"{term}"' for term in terms)
        rows = self.conn.execute(
            "SELECT path, first, last FROM windows WHERE windows MATCH ? ORDER BY rank LIMIT ?", (query, TOP_K)
        )
        return [{"path": p, "start_line": s, "end_line": e, "symbol": None} for p, s, e in rows]


# --- reporting ---------------------------------------------------------------------------------------


def summary_rows(codebases: list[Codebase], key: str = "rank") -> list[dict]:
    """Per-codebase rows, then one overall row per split (micro-averaged over questions)."""
    rows = []
    for split in SPLITS:
        in_split = [c for c in codebases if c.split == split]
        if not in_split:
            continue
        for codebase in in_split:
            hit3, mrr = scores([r[key] for r in codebase.results])
            rows.append({"split": split, "codebase": codebase.name, "language": codebase.language,
                         "n": len(codebase.results), "hit@3": hit3, "mrr@5": mrr})  # fmt: skip
        ranks = [r[key] for c in in_split for r in c.results]
        hit3, mrr = scores(ranks)
        rows.append({"split": split, "codebase": "overall", "language": "", "n": len(ranks), "hit@3": hit3,
                     "mrr@5": mrr})  # fmt: skip
    return rows


def print_table(rows: list[dict], baseline_rows: list[dict] | None) -> None:
    header = f"{'codebase':<16} {'language':<12} {'n':>4} {'hit@3':>6} {'MRR@5':>6}"
    if baseline_rows:
        header += f"   {'BM25 hit@3':>10} {'MRR@5':>6}"
    for split in SPLITS:
        numbered = [(i, row) for i, row in enumerate(rows) if row["split"] == split]
        if not numbered:
            continue
        print(f"\n{split} split\n{header}\n{'-' * len(header)}")
        for i, row in numbered:
            if row["codebase"] == "overall":
                print("-" * len(header))
            line = f"{row['codebase']:<16} {row['language']:<12} {row['n']:>4} "
            line += f"{row['hit@3']:>6.2f} {row['mrr@5']:>6.2f}"
            if baseline_rows:
                line += f"   {baseline_rows[i]['hit@3']:>10.2f} {baseline_rows[i]['mrr@5']:>6.2f}"
            print(line)


TEST_WARNING = (
    "WARNING: misses of the held-out TEST split follow. Never use them to tune the ranking: "
    "tune on the dev split only, or the test figures stop meaning anything."
)


def print_misses(codebases: list[Codebase]) -> None:
    """Each question without a hit in the top 3, with what was expected and the top 5 returned."""
    warned = False
    for codebase in codebases:
        misses = [r for r in codebase.results if r["rank"] is None or r["rank"] > HIT_AT]
        if not misses:
            continue
        if codebase.split == "test" and not warned:
            print(f"\n{TEST_WARNING}")
            warned = True
        print(f"\nmisses in {codebase.split}/{codebase.name}:")
        for result in misses:
            found = f"first hit at {result['rank']}" if result["rank"] else "no hit in top 5"
            print(f"  Q: {result['question']}  ({found})")
            for entry in result["expect"]:
                print(f"     expected {entry['path']}:{entry['lines'][0]}-{entry['lines'][1]} {entry['symbol']}")
            for rank, s in enumerate(result["sources"], 1):
                print(f"     {rank}. {s['path']}:{s['start_line']}-{s['end_line']} {s['symbol'] or ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all")
    parser.add_argument("--codebase", action="append", default=[], metavar="NAME", help="only this one (repeatable)")
    parser.add_argument("--misses", action="store_true", help="print each missed question with the top 5")
    parser.add_argument("--baseline", action="store_true", help="also score BM25 over 50-line windows")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write machine-readable results here")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR", help=f"default {DEFAULT_CACHE}")
    args = parser.parse_args(argv)

    try:
        codebases = load_codebases(SPLITS if args.split == "all" else (args.split,))
    except BadQuestionFile as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unknown = set(args.codebase) - {c.name for c in codebases}
    if unknown:
        print(f"error: no question file for codebase {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    codebases = [c for c in codebases if not args.codebase or c.name in args.codebase]
    if not codebases:
        print("error: no question files found", file=sys.stderr)
        return 2

    folders = {}
    for codebase in codebases:
        src = codebase.source
        fetched = cache_path(args.cache, src).is_dir()
        progress(f"fetching {codebase.name} ({src['kind']} {src['name']} {src['version']})…", keep=not fetched)
        try:
            folders[codebase.name] = cached_source(args.cache, src)
        except FetchError as exc:
            progress("")
            print(f"error: {codebase.name}: {exc}", file=sys.stderr)
            return 1
    progress(f"{len(codebases)} codebases in {args.cache}", keep=True)
    problems = [p for c in codebases for p in sanity_problems(c, folders[c.name])]
    if problems:
        print("error: expected entries do not match the downloaded code:", *problems, sep="\n  ", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="askgate-quality-") as workspaces:
        for codebase in codebases:
            if not (Path(workspaces) / codebase.name).exists():
                index_workspace(Path(workspaces), codebase, folders[codebase.name])
            baseline = Baseline(folders[codebase.name]) if args.baseline else None
            progress(f"asking {codebase.name}: {len(codebase.questions)} questions")
            evaluate(codebase, Path(workspaces), baseline)
        progress("")

    rows = summary_rows(codebases)
    baseline_rows = summary_rows(codebases, "baseline_rank") if args.baseline else None
    print_table(rows, baseline_rows)
    if args.misses:
        print_misses(codebases)
    if args.json:
        report = {"summary": rows, "baseline": baseline_rows, "questions": [r for c in codebases for r in c.results]}
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
