"""Segmentation of realistic sheets (bench/realistic_sheets.py), end to end through ``segment_folder``.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_sheets_realistic.py \
        --seeds 900 901 [--conditions photo-even ...] [--json out.json] [--workers 1 2]

Per condition (the sheets are written as the files a user has - 12 MP phone JPEGs, 300 dpi scans -
into a temporary folder and segmented like ``mnistp4 segment`` does, decode and all writes included):

* found    - written digits (clean or touching the line) that came out not ``empty`` / expected;
* wrong!   - boxes that came out as a clean digit although they are not one (crossed out, scribble,
  written across two boxes, an empty box with a phantom digit) or with a wrong label. Must be 0.
  ``of them: other digit`` counts those whose drawing is not the label's digit (a struck 2 in the
  row of 4s, a scribble, a wrong label) - training data poisoned - the rest are the row's own digit
  struck through (the label is the written digit's, the drawing carries a stroke);
  On tablet pages (no boxes) each row's outputs are matched to the written items by their drawing,
  in order (``aligned``), so a split or merged item shifts nothing after it; an unflagged piece
  that matches no written item counts here too;
* garbled  - clean digits that came out unflagged but do not look like the written digit
  (correlation < 0.5 to it after a 1-pixel blur: cut strokes, a box line in the 28x28);
  A correction cut down to the row's digit alone is not wrong (``top digit alone`` among the
  outcomes): the digit underneath, drawn fainter, was left out as paper, and the 28x28 is as
  close to the row's digit by itself as most clean digits are to theirs (``TOP_ALONE_CLOSE``) and
  clearly closer to it than to the drawing as written (``TOP_ALONE_MARGIN``);
* bad ok   - not-a-digit boxes that came out flagged or empty (or a correction cut to the row's
  digit alone) / all such boxes;
* flagged  - share of found written digits that carry a flag; ``border`` how many of them;
* clean flagged - the same share among clean, well-written digits (inside their box, not touching
  its line); the flags behind it are listed per condition;
* usable   - written digits that came out found and unflagged / expected;
* digits/s - manifest rows (every box, empty ones included) per CPU second (the segmenting
  process and its worker processes, ``resource.getrusage``) and per wall second, per condition
  with the first ``--workers`` count;
  then one batch of 12 MP photos (every photo condition x ``--batch-seeds``) is segmented with
  each ``--workers`` count in turn, ``--batch-repeats`` rounds, into a fresh data dir each time:
  the speed-up from more workers (median and spread over the rounds), in this process and through
  the ``mnistp4 segment`` command (its own start, imports and plugin loading included); and,
  with two counts or more, the machine's own scaling (one photo decoded and segmented by two
  processes at once against one alone): the ceiling of that speed-up on these cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchmeta
import cv2
import numpy as np
import realistic_sheets as rs  # noqa: E402

from mnistp4.stages.data.manifest import read_manifest  # noqa: E402
from mnistp4.stages.data.normalizer import normalize_digit  # noqa: E402
from mnistp4.stages.sheets.batch import segment_folder  # noqa: E402
from mnistp4.stages.sheets.layout import default_layouts  # noqa: E402
from mnistp4.stages.sheets.segment_template import segment_auto  # noqa: E402
from mnistp4.stages.sheets.sheet_image import decode_sheet  # noqa: E402
from mnistp4.stages.sheets.synth import closeness  # noqa: E402

TUNING_SEEDS = [11, 12, 13]
HELD_OUT_SEEDS = [901, 902, 903]


#: a tablet page's output and a truth item are the same drawing only this close (``closeness``)
MIN_MATCH = 0.3


def aligned(similarity: np.ndarray) -> list[tuple[int, int]]:
    """(truth, output) index pairs in order along a row, with the largest summed ``similarity``
    (truth x output); pairs below MIN_MATCH are never made. Splits, merges and pieces a
    segmenter finds or misses then shift nothing after them."""
    m, n = similarity.shape
    best = np.zeros((m + 1, n + 1))
    for i in range(m - 1, -1, -1):
        for j in range(n - 1, -1, -1):
            pair = similarity[i, j] + best[i + 1, j + 1] if similarity[i, j] >= MIN_MATCH else -np.inf
            best[i, j] = max(pair, best[i + 1, j], best[i, j + 1])
    pairs, i, j = [], 0, 0
    while i < m and j < n:
        if similarity[i, j] >= MIN_MATCH and best[i, j] == similarity[i, j] + best[i + 1, j + 1]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i, j] == best[i + 1, j]:
            i += 1
        else:
            j += 1
    return pairs


def tablet_keys(sheet, file: str, rows: dict, data_dir: Path) -> tuple[dict, list]:
    """A tablet page's truth key -> output key, matched by drawing (:func:`aligned`) instead of by
    position in the row; and the output keys matched to no truth item (pieces of a split, marks)."""
    mapping, extras = {}, []
    for r in sorted({k[0] for k in sheet.boxes}):
        truth = sorted(k for k in sheet.boxes if k[0] == r)
        out = sorted(k for k in rows if k[0] == file and k[1] == r and "empty" not in (rows[k]["flags"] or ""))
        images = [cv2.imread(str(data_dir / rows[k]["path"]), cv2.IMREAD_GRAYSCALE) for k in out]
        sim = np.array([[closeness(im, sheet.boxes[t].ref) for im in images] for t in truth]).reshape(
            len(truth), len(out)
        )
        pairs = aligned(sim)
        mapping.update({(file, *truth[i]): out[j] for i, j in pairs})
        extras += [out[j] for j in sorted(set(range(len(out))) - {j for _, j in pairs})]
    return mapping, extras


def score(sheets: list, data_dir: Path) -> dict:
    rows = {(r["sheet"], int(r["row"]), int(r["col"])): r for r in read_manifest(data_dir)}
    s = dict(
        expected=0,
        found=0,
        usable=0,
        flagged=0,
        border=0,
        wrong=0,
        garbled=0,
        bad=0,
        bad_ok=0,
        empty_phantom=0,
        empty_cut=0,
        clean=0,
        clean_flagged=0,
        extra_unflagged=0,
        wrong_other=0,
    )
    clean_flags: dict[str, int] = {}
    outcomes: dict[str, dict[str, int]] = {}
    examples = []
    for sheet, file in sheets:
        tablet = rs.CONDITIONS[sheet.condition]["capture"] == "tablet"
        mapping, extras = tablet_keys(sheet, file, rows, data_dir) if tablet else ({}, [])
        for key in extras:  # a piece that is no written item: wrong unless flagged
            if not (rows[key]["flags"] or ""):
                s["wrong"] += 1
                s["wrong_other"] += 1
                s["extra_unflagged"] += 1
                examples.append(f"wrong {file} r{key[1]}c{key[2]} an extra piece")
        for (r, c), truth in sheet.boxes.items():
            key = mapping.get((file, r, c)) if tablet else (file, r, c)
            got = rows.get(key) if key else None
            flags = set((got["flags"] or "").split(";")) - {""} if got else {"missing"}
            empty = "empty" in flags
            top_alone = (
                not flags
                and got is not None
                and truth.kind == "bad"
                and truth.ref_written is not None
                and _top_alone(cv2.imread(str(data_dir / got["path"]), cv2.IMREAD_GRAYSCALE), truth)
            )
            if truth.what in OUTCOME_KINDS:
                seen = outcomes.setdefault(f"{truth.kind} {truth.what}", {"empty": 0, "flagged": 0, "clean": 0})
                state = "empty" if empty or got is None else "flagged" if flags else "clean"
                state = "top digit alone" if top_alone else state
                if state == "clean" and truth.what == "rewritten":
                    state = "ghost in it" if _ghost_in(data_dir / got["path"], truth) else "digit alone"
                seen[state] = seen.get(state, 0) + 1
            if truth.kind == "digit":
                s["expected"] += 1
                if empty or got is None:
                    continue
                s["found"] += 1
                s["flagged"] += bool(flags)
                s["border"] += "border" in flags
                if truth.what == "clean":
                    s["clean"] += 1
                    s["clean_flagged"] += bool(flags)
                    for f in flags:
                        clean_flags[f] = clean_flags.get(f, 0) + 1
                if int(got["label"]) != truth.label and not flags:
                    s["wrong"] += 1
                    s["wrong_other"] += 1
                    examples.append(f"wrong {file} r{r}c{c} digit labelled {got['label']} (a {truth.label})")
                if not flags:
                    s["usable"] += 1
                    image = cv2.imread(str(data_dir / got["path"]), cv2.IMREAD_GRAYSCALE)
                    if closeness(image, truth.ref) < 0.5:
                        s["garbled"] += 1
                        examples.append(f"garbled {file} r{r}c{c} {truth.what}")
            else:
                bad = truth.kind == "bad"
                s["bad"] += bad
                if top_alone:
                    s["bad_ok"] += 1
                elif empty or flags:
                    s["bad_ok"] += bad
                    # an empty box cut as (flagged) ink: noise or a smudge read as a mark, to review
                    # (a stray mark in the box is ink: flagged, as it should be, and not counted)
                    s["empty_cut"] += truth.kind == "empty" and truth.what != "stray" and got is not None and not empty
                else:
                    s["wrong"] += 1
                    s["empty_phantom"] += not bad
                    own = truth.label is not None and truth.label == int(got["label"])
                    s["wrong_other"] += not own
                    struck = f" (a {truth.label})" if truth.label is not None else ""
                    examples.append(f"wrong {file} r{r}c{c} {truth.kind} {truth.what}{struck}")
    s["examples"] = examples[:12]
    s["wrong_boxes"] = [e for e in examples if e.startswith("wrong ")]  # every one, for --all-wrong
    s["clean_flags"] = clean_flags
    s["outcomes"] = outcomes
    return s


#: box kinds whose outcome (empty, flagged, clean) is printed on its own: corrections, stray
#: marks alone in a box (only empty or flagged is right) or beside a digit (clean is right),
#: two digits of a tablet page whose inks touch (one of them may come out, never clean), rubbed-out
#: digits in empty boxes, and digits written over a rubbed-out one (clean: ``digit alone`` or
#: ``ghost in it``: the 28x28 unlike the digit alone and closer to the digit with its ghost)
OUTCOME_KINDS = ("correction", "stray", "touching-pair", "erased", "rewritten")
#: a correction that came out unflagged is the row's digit alone when its 28x28 is this close to
#: that digit by itself (``closeness``; about the 5th percentile of clean digits to their own on
#: the tuning seeds 11-30) ...
TOP_ALONE_CLOSE = 0.85
#: ... and closer to it than to the whole drawing (the digit underneath included) by this much
TOP_ALONE_MARGIN = 0.15


def _top_alone(image: np.ndarray, truth: rs.BoxTruth) -> bool:
    """A correction's 28x28 shows the row's digit without the one underneath (see ``score``)."""
    top = closeness(image, truth.ref)
    return top >= TOP_ALONE_CLOSE and top >= closeness(image, truth.ref_written) + TOP_ALONE_MARGIN


def _ghost_in(path: Path, truth: rs.BoxTruth) -> bool:
    """A rewritten digit's 28x28 is less close to the digit alone than most clean digits are to
    theirs (``TOP_ALONE_CLOSE``) and closer to the digit with its rubbed-out ghost."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    alone = closeness(image, truth.ref)
    return alone < TOP_ALONE_CLOSE and closeness(image, truth.ref_written) > alone


def outcome_line(outcomes: dict) -> str:
    return "; ".join(
        f"{kind}: " + ", ".join(f"{k} {v}" for k, v in seen.items() if v) for kind, seen in sorted(outcomes.items())
    )


#: segment as ``mnistp4 segment --strict`` does (``--strict-checker``; here and in bench_photo_stress.py)
STRICT_CHECKER = False


def segment(raw: Path, data: Path, workers: int) -> dict:
    """``raw`` segmented into ``data`` as ``mnistp4 segment`` does on the shipped defaults (with
    ``--strict`` when :data:`STRICT_CHECKER`)."""
    return segment_folder(
        raw,
        data,
        segmenter=segment_auto,
        segmenter_name="auto",
        layout=None,
        layouts={lay.name: lay for lay in default_layouts()},
        normalize=normalize_digit,
        normalizer_name="mnist",
        default_rows="0123456789",
        strict_checker=STRICT_CHECKER,
        workers=workers,
    )


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (segment's worker processes: an
    idle worker exits after the batch has returned, so this waits until every child is reaped)."""
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:  # reaps the ones that exited
        time.sleep(0.01)
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(run):
    """``run()``'s result, CPU seconds (with its worker processes) and wall seconds; what earlier
    runs wrote is synced first, so no run pays for writing back another's files."""
    os.sync()
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    result = run()
    wall = time.perf_counter() - wall0
    return result, _cpu_seconds() - cpu0, wall


def write_sheets(raw: Path, condition: str, seeds: list[int], hand) -> list[tuple]:
    """The sheets of ``condition`` x ``seeds`` written into ``raw`` as the files a user has:
    (sheet, file name) each."""
    sheets = []
    for seed in seeds:
        sheet = rs.make_sheet(condition, seed, hand)
        payload, suffix = rs.encode(sheet)
        (raw / (sheet.name + suffix)).write_bytes(payload)
        sheets.append((sheet, sheet.name + suffix))
    return sheets


def run_condition(condition: str, seeds: list[int], hand, workers: list[int], keep: Path | None, work: Path) -> dict:
    # everything stays in ``work`` until the benchmark ends (see :func:`main`)
    tmp = work / condition
    raw = tmp / "raw"
    raw.mkdir(parents=True)
    sheets = write_sheets(raw, condition, seeds, hand)
    speeds = {}
    for n in workers:
        data = tmp / f"data-{n}"
        summary, cpu, wall = _timed(lambda data=data, n=n: segment(raw, data, n))
        speeds[n] = dict(
            cpu_s=cpu,
            wall_s=wall,
            per_cpu_s=summary["digits"] / max(cpu, 1e-9),
            per_wall_s=summary["digits"] / wall,
        )
        if n == workers[0]:
            first, result = summary, score(sheets, data)
            if keep:
                import shutil

                shutil.copytree(data / "review", keep / condition, dirs_exist_ok=True)
    result.update(
        condition=condition,
        sheets=len(seeds),
        failed=first["failed"],
        rows=first["digits"],
        cpu_s=speeds[workers[0]]["cpu_s"],
        wall_s=speeds[workers[0]]["wall_s"],
        digits_per_cpu_s=speeds[workers[0]]["per_cpu_s"],
        digits_per_wall_s=speeds[workers[0]]["per_wall_s"],
        speeds=speeds,
        errors=[r["error"] for r in first["results"] if r["error"]],
    )
    return result


def table(results: list[dict]) -> str:
    head = (
        "condition",
        "found/expected",
        "wrong!",
        "of them: other digit",
        "garbled",
        "bad ok",
        "flagged %",
        "clean flagged %",
        "border",
        "usable %",
        "digits/CPU s",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tot = {
        k: sum(r[k] for r in results)
        for k in (
            "expected",
            "found",
            "wrong",
            "wrong_other",
            "garbled",
            "bad",
            "bad_ok",
            "flagged",
            "clean",
            "clean_flagged",
            "border",
            "usable",
            "rows",
            "cpu_s",
        )
    }
    for r in results + [dict(tot, condition="all")]:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["condition"],
                    f"{r['found']}/{r['expected']}",
                    str(r["wrong"]),
                    str(r["wrong_other"]),
                    str(r["garbled"]),
                    f"{r['bad_ok']}/{r['bad']}",
                    f"{100 * r['flagged'] / max(1, r['found']):.1f}",
                    f"{100 * r['clean_flagged'] / max(1, r['clean']):.1f}",
                    str(r["border"]),
                    f"{100 * r['usable'] / max(1, r['expected']):.1f}",
                    f"{r['rows'] / max(r['cpu_s'], 1e-9):.0f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _sheet_loop(path: str, repeats: int, start, seconds) -> None:
    """In a process of its own: wait for ``start``, then decode and segment one photo
    ``repeats`` times; its wall seconds go into ``seconds``."""
    cv2.setNumThreads(1)
    data = Path(path).read_bytes()
    layouts = {lay.name: lay for lay in default_layouts()}
    segment_auto(decode_sheet(data, path), options={"layouts": layouts, "rows": "0123456789"})  # warm
    start.wait()
    t0 = time.perf_counter()
    for _ in range(repeats):
        segment_auto(decode_sheet(data, path), options={"layouts": layouts, "rows": "0123456789"})
    seconds.put(time.perf_counter() - t0)


def machine_scaling(photo: Path, repeats: int = 20) -> dict:
    """How much faster two processes on the machine's cores get through the same per-sheet work
    than one (2.0 = perfect): the same photo decoded and segmented ``repeats`` times by one
    process alone, then by two at once. The ceiling of any worker count's speed-up here."""
    ctx = multiprocessing.get_context("spawn")
    alone = {}
    for n in (1, 2):
        start, seconds = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_sheet_loop, args=(str(photo), repeats, start, seconds)) for _ in range(n)]
        for proc in procs:
            proc.start()
        time.sleep(3.0)  # both started and warm
        start.set()
        alone[n] = [seconds.get() for _ in procs]
        for proc in procs:
            proc.join()
    one, two = alone[1][0], max(alone[2])
    return {"one_process_s": one, "two_processes_s": alone[2], "scaling": 2 * one / two}


def bytecode_ahead() -> str:
    """:func:`benchmeta.compile_ahead`, as a line for the output."""
    count, ok = benchmeta.compile_ahead()
    setting = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
    status = "ok" if ok else "FAILED"
    return f"bytecode of {count} package folders compiled ahead ({status}); PYTHONDONTWRITEBYTECODE={setting!r}"


def photo_batch(seeds: list[int], hand, workers: list[int], work: Path, repeats: int = 3) -> dict:
    """One folder of 12 MP photos (every photo condition x ``seeds``), segmented like ``mnistp4
    segment`` with each worker count in turn, ``repeats`` rounds: the speed a user sees on a
    batch, workers' start included. Each round's speed-up is against the same round's first count
    (the machine's speed drifts between rounds)."""
    # everything stays in ``work`` until the benchmark ends (see :func:`main`)
    tmp = work / "batch"
    raw = tmp / "raw"
    raw.mkdir(parents=True)
    written = 0  # the digits written on the photos (their truth): what the speed goal counts
    for condition in (c for c in rs.CONDITIONS if c.startswith("photo")):
        for sheet, _ in write_sheets(raw, condition, seeds, hand):
            written += sum(t.kind == "digit" for t in sheet.boxes.values())
    out = {"sheets": len(list(raw.iterdir())), "written": written, "rounds": []}
    if len(workers) > 1:
        out["machine"] = machine_scaling(sorted(raw.iterdir())[0])
    for k in range(repeats):
        runs: dict = {"create_us": create_probe(tmp / f"probe-{k}")}
        # a fresh folder per run, none deleted until the end: on this machine's file system,
        # deleting thousands of files slows the file creation of the next seconds;
        # and everything written so far is synced before each run
        for n in workers:
            data = tmp / f"data-{n}-{k}"
            summary, cpu, wall = _timed(lambda data=data, n=n: segment(raw, data, n))
            runs[n] = dict(
                digits=summary["digits"], ink=_ink_rows(data), failed=summary["failed"], cpu_s=cpu, wall_s=wall
            )
        for n in workers:  # the same through the command: its own start included
            data = tmp / f"cli-{n}-{k}"
            command = [sys.executable, "-m", "mnistp4", "segment", str(raw), "-o", str(data)]
            command += ["--workers", str(n), "--json"]
            done, cpu, wall = _timed(
                lambda command=command: subprocess.run(command, capture_output=True, text=True, check=False)
            )
            ok = done.returncode == 0
            digits, ink = (json.loads(done.stdout)["digits"], _ink_rows(data)) if ok else (0, 0)
            runs[f"cli {n}"] = dict(digits=digits, ink=ink, failed=not ok, cpu_s=cpu, wall_s=wall)
        out["rounds"].append(runs)
    return out


def create_probe(folder: Path, files: int = 400) -> float:
    """Microseconds to create, write and rename one small file in a new ``folder`` (the files stay).
    On ext4 here, right after thousands of files were deleted, the next as many creations cost
    about ten times as much (kernel time in the command, in any program): this says in which state
    each round found the file system."""
    folder.mkdir()
    start = time.perf_counter()
    for i in range(files):
        tmp = folder / f".{i}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"x" * 300)
        os.close(fd)
        os.replace(tmp, folder / f"{i}.png")
    return (time.perf_counter() - start) / files * 1e6


def _ink_rows(data_dir: Path) -> int:
    """Manifest rows of ``data_dir`` with ink (not ``empty``): the digits a user gets, flagged or not."""
    return sum("empty" not in (r["flags"] or "").split(";") for r in read_manifest(data_dir))


def batch_table(batch: dict) -> str:
    rounds = batch["rounds"]
    counts = [n for n in rounds[0] if n != "create_us"]  # worker counts here, then "cli N": the command
    digits, ink = rounds[0][counts[0]]["digits"], rounds[0][counts[0]]["ink"]
    lines = [
        f"12 MP photo batch: {batch['sheets']} sheets, {digits} boxes (manifest rows, empty boxes included), "
        f"{ink} of them with ink, {batch.get('written', 0)} written digits (the rest: stray marks, crossed-out "
        f"and other non-digits); {len(rounds)} rounds (median, and min-max over the rounds)",
        "| workers | boxes/CPU s | with ink/CPU s | written digits/CPU s | boxes/wall s | wall speed-up |",
        "|---|---|---|---|---|---|",
    ]

    def spread(values) -> str:
        return f"{np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    for n in counts:
        first = f"cli {counts[0]}" if str(n).startswith("cli") else counts[0]
        per_cpu = [r[n]["digits"] / r[n]["cpu_s"] for r in rounds]
        ink_cpu = [r[n]["ink"] / r[n]["cpu_s"] for r in rounds]
        written_cpu = [batch.get("written", 0) / r[n]["cpu_s"] if not r[n]["failed"] else 0.0 for r in rounds]
        per_wall = [r[n]["digits"] / r[n]["wall_s"] for r in rounds]
        ups = [r[first]["wall_s"] / r[n]["wall_s"] for r in rounds]
        lines.append(
            f"| {n} | {np.median(per_cpu):.0f} ({min(per_cpu):.0f}-{max(per_cpu):.0f}) | "
            f"{np.median(ink_cpu):.0f} ({min(ink_cpu):.0f}-{max(ink_cpu):.0f}) | "
            f"{np.median(written_cpu):.0f} ({min(written_cpu):.0f}-{max(written_cpu):.0f}) | "
            f"{np.median(per_wall):.0f} ({min(per_wall):.0f}-{max(per_wall):.0f}) | {spread(ups)}x |"
        )
    probes = [r["create_us"] for r in rounds if "create_us" in r]
    if probes:
        lines.append(
            f"file creation at each round's start: {np.median(probes):.0f} us per file (median; "
            f"{min(probes):.0f}-{max(probes):.0f}; on this machine about ten times as much right after mass "
            f"deletions: docs/sheets.md)"
        )
    if "machine" in batch:
        m = batch["machine"]
        lines.append(
            f"the machine itself: the same photo decoded and segmented by two processes at once "
            f"{m['scaling']:.2f}x as fast as by one (2.00 = perfect; the ceiling of two workers here)"
        )
    return "\n".join(lines)


def speed_table(results: list[dict]) -> str:
    """Digits per CPU second and per wall second for each worker count; the 12 MP photo
    conditions together (the speed goal) and all conditions together."""
    counts = list(results[0]["speeds"])
    head = ["condition"] + [f"{n}w /CPU s" for n in counts] + [f"{n}w /wall s" for n in counts]
    if len(counts) > 1:
        head.append(f"wall {counts[-1]}w / {counts[0]}w")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = [(r["condition"], [r]) for r in results]
    groups.append(("photos (12 MP)", [r for r in results if r["condition"].startswith("photo")]))
    groups.append(("all", results))
    for name, rs_ in groups:
        if not rs_:
            continue
        rows = sum(r["rows"] for r in rs_)
        cpu = {n: sum(r["speeds"][n]["cpu_s"] for r in rs_) for n in counts}
        wall = {n: sum(r["speeds"][n]["wall_s"] for r in rs_) for n in counts}
        cells = [name] + [f"{rows / cpu[n]:.0f}" for n in counts] + [f"{rows / wall[n]:.0f}" for n in counts]
        if len(counts) > 1:
            cells.append(f"{wall[counts[0]] / wall[counts[-1]]:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=HELD_OUT_SEEDS)
    parser.add_argument("--conditions", nargs="+", default=list(rs.CONDITIONS), choices=list(rs.CONDITIONS))
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="worker counts to time (quality: the first)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep-review", type=Path, default=None, help="copy the review pictures here")
    parser.add_argument("--tag", default="", help="suffix of the result folder (e.g. held-out, baseline)")
    parser.add_argument(
        "--batch-seeds",
        type=int,
        nargs="+",
        default=list(range(801, 813)),
        help="seeds of the 12 MP photo batch timed with each worker count (all photo conditions)",
    )
    parser.add_argument(
        "--batch-repeats", type=int, default=3, help="rounds of the photo batch timing (0: quality only, no batch)"
    )
    parser.add_argument(
        "--full-size-decode",
        action="store_true",
        help="decode every JPEG at its full size (what decoding 12 MP photos at half size loses); one worker",
    )
    parser.add_argument(
        "--strict-checker", action="store_true", help="segment as `mnistp4 segment --strict` does (`doubtful` flags)"
    )
    args = parser.parse_args(argv)
    if args.strict_checker:
        global STRICT_CHECKER
        STRICT_CHECKER = True
    if args.full_size_decode:
        if args.workers != [1] or args.batch_repeats:
            parser.error("--full-size-decode acts in this process alone: --workers 1 --batch-repeats 0")
        from mnistp4.stages.sheets import sheet_image

        sheet_image.DECODED_MIN_SIDE = 10**9
    out_dir = benchmeta.start("bench_sheets_realistic", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    cv2.setNumThreads(1)
    print(bytecode_ahead())
    hand = rs.Handwriting.from_env()
    # one folder for everything the run writes, deleted only at its end: on this machine's file
    # system, file creation right after mass deletions costs ten times as much (create_probe)
    with tempfile.TemporaryDirectory() as tmp:
        return run(args, hand, out_dir, Path(tmp))


def run(args, hand, out_dir: Path, work: Path) -> int:
    results = []
    for condition in args.conditions:
        results.append(run_condition(condition, args.seeds, hand, args.workers[:1], args.keep_review, work))
        r = results[-1]
        speed = ", ".join(
            f"{n} worker(s) {v['per_cpu_s']:.0f}/CPU s {v['per_wall_s']:.0f}/wall s" for n, v in r["speeds"].items()
        )
        print(
            f"{condition}: {r['found']}/{r['expected']} found, wrong {r['wrong']}; digits per second: {speed}",
            flush=True,
        )
        for e in r["examples"] + r["errors"]:
            print("   ", e)
        if r["clean_flags"]:
            print("    flags on clean digits:", ", ".join(f"{k} {v}" for k, v in sorted(r["clean_flags"].items())))
        if r["outcomes"]:
            print("    outcomes:", outcome_line(r["outcomes"]))
    load = os.getloadavg()
    print(f"seeds {args.seeds}, workers {args.workers}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(table(results))
    everything: dict[str, dict[str, int]] = {}
    for r in results:
        for kind, seen in r["outcomes"].items():
            for k, v in seen.items():
                everything.setdefault(kind, {}).setdefault(k, 0)
                everything[kind][k] += v
    print("outcomes, all conditions:", outcome_line(everything))
    print()
    print(speed_table(results))
    batch = photo_batch(args.batch_seeds, hand, args.workers, work, args.batch_repeats) if args.batch_repeats else {}
    if batch:
        print()
        print(batch_table(batch))
    report = json.dumps(
        {"seeds": args.seeds, "workers": args.workers, "load": load, "results": results, "photo_batch": batch}, indent=1
    )
    (out_dir / "bench_sheets_realistic.json").write_text(report)
    benchmeta.finish(out_dir)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
