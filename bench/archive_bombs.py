"""Peak memory of importing the archive header bombs of issue 10 (items 1-2), in a child process.

Usage: .venv/bin/python bench/archive_bombs.py [TREE]   (TREE: a checkout to measure, default this one)
Prints, per attack, the seconds taken, the child's peak RSS (VmHWM) and the refusal.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_unpack_limits import _long_name_bomb, _lying_zip  # noqa: E402

CHILD = (
    "import json, sys\n"
    "from app.ask import ImportRefused, import_workspace\n"
    "try:\n"
    "    import_workspace(sys.argv[1], 'attack', sys.argv[2]); refusal = None\n"
    "except ImportRefused as exc:\n"
    "    refusal = str(exc)\n"
    "peak = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
    "print(json.dumps({'refusal': refusal, 'peak_kib': peak}))\n"
)


def main() -> None:
    tree = sys.argv[1] if len(sys.argv) > 1 else str(ROOT)
    scratch = Path(tempfile.mkdtemp())
    attacks = [_long_name_bomb(scratch / "bomb.tar.gz", 1024**3), _lying_zip(scratch / "lying.zip", 1_000_000)]
    for archive in attacks:
        root = Path(tempfile.mkdtemp())
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), str(archive)], cwd=tree, capture_output=True, text=True
        )
        result = json.loads(run.stdout)
        print(
            f"{archive.name} ({archive.stat().st_size / 1e6:.2f} MB): {time.monotonic() - started:.1f} s, "
            f"peak {result['peak_kib'] // 1024} MB, refused: {result['refusal']}"
        )


if __name__ == "__main__":
    main()
