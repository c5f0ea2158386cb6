"""Run a benchmark script of this checkout against the package code of another commit: the same
benchmark, same inputs, the code before and after a change.

    .venv/bin/python bench/with_checkout.py e512393 bench/bench_sheets_realistic.py \
        --seeds 901 902 903 --tag baseline-code-e512393

The commit is checked out with ``git worktree`` into a temporary folder; its ``mnistp4`` and its
shipped stages (``plugins/`` as ``mnistp4.stages``) are put first on the import path, ahead of the
installed (editable) package; the benchmark script and its helpers under ``bench/`` stay this
checkout's; ``meta.json`` names both (``package_code``). Only work done in this process uses the
other code (worker processes import the installed package), so time such runs with one worker.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    rev, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    tmp = Path(tempfile.mkdtemp(prefix="mnistp4-checkout-"))
    tree = tmp / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
    try:
        shim = tmp / "shim"
        shutil.copytree(tree / "mnistp4", shim / "mnistp4")
        (shim / "mnistp4" / "stages").symlink_to(tree / "plugins", target_is_directory=True)
        # the editable install's finder would resolve mnistp4 to this checkout: drop it
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path[:0] = [str(shim), str(REPO / "bench")]
        sys.argv = [script, *args]
        os.environ["MNISTP4_BENCH_PACKAGE_CODE"] = f"{rev} (bench/with_checkout.py {rev} {script} ...)"
        print(f"package code of {rev} ({tree}), benchmark {script} of this checkout", flush=True)
        runpy.run_path(script, run_name="__main__")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
