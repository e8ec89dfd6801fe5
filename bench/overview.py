"""Print the overview a broad question gets on each quality codebase, to judge it on code nobody wrote it for.

Usage: python bench/overview.py [--question TEXT] [--codebase NAME ...] [--snippets] [--cache DIR]

Only the dev split's codebases (bench/quality/dev/): the test split stays unseen. Each codebase is fetched
into the cache like bench/quality.py does, imported as one workspace, and asked through ``app.ask.engine.ask``
exactly as ``POST /api/ask`` asks it. Nothing is graded: read the answers and their sources.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import (  # noqa: E402 - bench/quality.py sets up the import path for the app
    DEFAULT_CACHE,
    FetchError,
    ask,
    cached_source,
    index_workspace,
    load_codebases,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question", default="How does this code work?")
    parser.add_argument("--codebase", action="append", default=[], metavar="NAME", help="only this one (repeatable)")
    parser.add_argument("--snippets", action="store_true", help="print each source's snippet too")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR", help=f"default {DEFAULT_CACHE}")
    args = parser.parse_args(argv)

    codebases = [c for c in load_codebases(("dev",)) if not args.codebase or c.name in args.codebase]
    if not codebases:
        print("error: no such dev codebase", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="askgate-overview-") as workspaces:
        root = Path(workspaces)
        for codebase in codebases:
            try:
                folder = cached_source(args.cache, codebase.source)
            except FetchError as exc:
                print(f"error: {codebase.name}: {exc}", file=sys.stderr)
                return 1
            index_workspace(root, codebase, folder)
            started = time.perf_counter()
            result = ask(root, codebase.name, args.question, top_k=args.top_k)
            elapsed = (time.perf_counter() - started) * 1000
            print(f"\n===== {codebase.name} ({codebase.language}), {elapsed:.0f} ms: {args.question}\n")
            print(result["answer"])
            print("\nSources:")
            for source in result["sources"]:
                symbol = f" {source['symbol']}" if source["symbol"] else ""
                print(f"  {source['path']} {source['start_line']}-{source['end_line']}{symbol} ({source['score']})")
                if args.snippets:
                    print("    | " + source["snippet"].replace("\n", "\n    | "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
