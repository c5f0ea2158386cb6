"""Helpers shared by the reliability tests (test_reliability_*.py, test_web_security.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from mnistp4.stages.sheets import synth as _synth

ROOT = Path(__file__).resolve().parents[1]
ROWS = "0123456789"


def make_sheets(folder: Path, semeion_dir: Path, n: int, seed: int, per_row: int = 2) -> list[Path]:
    """``n`` small freeform sheets (10 rows x ``per_row`` Semeion digits), each with its own content."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = _synth.load_semeion(semeion_dir / "semeion-dev.data")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        rows = [[images[i] for i in rng.choice(np.flatnonzero(labels == d), per_row, replace=False)] for d in range(10)]
        page, _ = _synth.freeform_sheet(rows, ROWS, rng)
        path = folder / f"sheet{seed}_{k}.png"
        cv2.imwrite(str(path), page)
        out.append(path)
    return out


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "MNISTP4_PLUGINS"}
    e["PYTHONPATH"] = str(ROOT)
    e.update(extra)
    return e


def mnistp4(*args, cwd: Path, preexec_fn=None, **extra_env) -> subprocess.Popen:
    """``python -m mnistp4 ARGS`` as a real process (stdout and stderr captured as text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mnistp4", *map(str, args)],
        cwd=cwd,
        env=env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def assert_one_line_error(text: str, *needles: str) -> None:
    """No traceback, an ``error:`` line, and every needle in the (re-flowed) text."""
    assert "Traceback" not in text, text
    assert any(ln.startswith("error:") for ln in text.splitlines()), text
    flat = " ".join(text.split())
    for n in needles:
        assert n in flat, (n, text)


def temp_files(folder: Path) -> list[Path]:
    """Left-over temporary files of atomic writes (none may survive a failure)."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name or ".staging-" in p.name]


@contextmanager
def held_elsewhere(code: str, cwd: Path):
    """Another process that runs ``code`` (taking a lock), says 'held' and keeps it: its Popen."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\n{code}\n    print('held', flush=True)\n    time.sleep(60)\n"],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
