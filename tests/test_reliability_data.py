"""Nothing lost in a data dir: concurrent writers (real processes), hand-edited manifests, failing
hooks, worker processes that die with the command. Cases of docs/reliability.md (D1-D9)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reliability_kit import assert_one_line_error, env, held_elsewhere, make_sheets, mnistp4

from mnistp4.cli import main
from mnistp4.stages.data.manifest import COLUMNS, read_decisions, read_manifest, record_decision


def sheets_in(data: Path) -> set[str]:
    return {r["sheet"] for r in read_manifest(data)}


@pytest.fixture(scope="module")
def sheets(tmp_path_factory, semeion_dir):
    base = tmp_path_factory.mktemp("sheets")
    return {
        "a": make_sheets(base / "raw_a", semeion_dir, 2, seed=1),
        "b": make_sheets(base / "raw_b", semeion_dir, 2, seed=2),
    }


@pytest.fixture(scope="module")
def segmented(tmp_path_factory, sheets):
    """A data dir made once from raw_a (tests copy it)."""
    data = tmp_path_factory.mktemp("seg") / "data"
    assert main(["segment", str(sheets["a"][0].parent), "-o", str(data), "--workers", "1", "--json"]) == 0
    return data


@pytest.fixture
def data(segmented, tmp_path):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(segmented, d)
    return d


# ---- D1: two segment runs into one data dir ------------------------------------------------------


@pytest.mark.slow
def test_two_concurrent_segment_runs_keep_every_sheet(sheets, tmp_path):
    data = tmp_path / "data"
    other = mnistp4("segment", sheets["b"][0].parent, "-o", data, "--workers", "1", "--json", cwd=tmp_path)
    code = main(["segment", str(sheets["a"][0].parent), "-o", str(data), "--workers", "1", "--json"])
    out, err = other.communicate(timeout=300)
    assert (code, other.returncode) == (0, 0), err
    want = {p.name for p in sheets["a"] + sheets["b"]}
    assert sheets_in(data) == want
    rows = read_manifest(data)
    assert len(rows) == 4 * 20 and all((data / r["path"]).is_file() for r in rows)
    # a re-run of one raw folder keeps the other's sheets (it only owns its own)
    assert main(["segment", str(sheets["a"][0].parent), "-o", str(data), "--json"]) == 0
    assert sheets_in(data) == want


# ---- D2: relabel while segment runs, 20 rounds -----------------------------------------------------

SEGMENT_LOOP = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mnistp4.app import create_app
    from mnistp4.stages.sheets.segment import run_segment
    raw, data, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    app = create_app(root=data.parent)
    for i in range(rounds):
        run_segment(app, raw, data, show_progress=False)
        print("round", i, flush=True)
""")


@pytest.mark.slow
def test_relabel_during_segment_loses_nothing_over_20_rounds(sheets, data, tmp_path):
    rows = read_manifest(data)
    loop = subprocess.Popen(
        [sys.executable, "-c", SEGMENT_LOOP, str(sheets["a"][0].parent), str(data), "20"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    recorded = {}
    k = 0
    while loop.poll() is None or k < 20:
        r = rows[k % len(rows)]
        label = (k * 7) % 10
        record_decision(data, r["sheet_hash"], r["row"], r["col"], label=label)
        recorded[(r["sheet_hash"], r["row"], r["col"])] = label
        k += 1
        time.sleep(0.02)  # a person between two keys; without it this loop would starve the other writer
    out, err = loop.communicate(timeout=300)
    assert loop.returncode == 0, err
    assert out.count("round") == 20
    final = {(r["sheet_hash"], r["row"], r["col"]): r for r in read_manifest(data)}
    decisions = read_decisions(data)
    lost = [key for key, label in recorded.items() if final[key]["label"] != label or decisions[key]["label"] != label]
    assert lost == [], f"{len(lost)} of {len(recorded)} decisions lost"


# ---- D3: a second writer says who holds the data dir ---------------------------------------------------


def test_a_busy_data_dir_names_the_process_that_holds_it(data, tmp_path, capsys, monkeypatch):
    holding = f"from mnistp4.stages.data.manifest import data_dir_lock\nwith data_dir_lock({str(data)!r}):"
    with held_elsewhere(holding, tmp_path) as holder:
        monkeypatch.setenv("MNISTP4_LOCK_TIMEOUT", "1.5")
        name = Path(read_manifest(data)[0]["path"]).name
        t0 = time.monotonic()
        code = main(["label", name, "--label", "3", "-d", str(data)])
        err = capsys.readouterr().err
        assert code == 1 and time.monotonic() - t0 < 10
        assert_one_line_error(err, f"in use by PID {holder.pid}")
    assert main(["label", name, "--label", "3", "-d", str(data)]) == 0  # free again: it works


# ---- D4-D6: the manifest is the user's file too -------------------------------------------------------


def rewrite_manifest(data: Path, edit) -> None:
    path = data / "manifest.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    header = edit(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_unknown_columns_survive_label_and_segment(data, sheets, capsys):
    def add_note(rows):
        for i, r in enumerate(rows):
            r["note"] = f'checked by Ana, #{i}, "ok"'
        return COLUMNS + ["note"]

    rewrite_manifest(data, add_note)
    first = read_manifest(data)[0]
    assert main(["label", first["path"], "--label", "5", "-d", str(data)]) == 0
    assert main(["segment", str(sheets["a"][0].parent), "-o", str(data), "--json"]) == 0
    rows = read_manifest(data)
    assert [r["note"] for r in rows] == [f'checked by Ana, #{i}, "ok"' for i in range(len(rows))]
    assert rows[0]["label"] == 5 and rows[0]["decision"] == "relabeled"


def test_bom_manifest_is_read_and_cp1252_is_a_clear_error(data, sheets, capsys):
    path = data / "manifest.csv"
    text = path.read_text(encoding="utf-8")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # a spreadsheet's "CSV UTF-8"
    name = Path(read_manifest(data)[0]["path"]).name
    assert main(["label", name, "--label", "4", "-d", str(data)]) == 0
    capsys.readouterr()
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    lines[3] = lines[3] + ",Müller"  # cp1252: ü is one byte 0xfc
    path.write_bytes(("\n".join([lines[0] + ",writer"] + lines[1:]) + "\n").encode("cp1252"))
    before = path.read_bytes()
    code = main(["label", name, "--label", "4", "-d", str(data)])
    err = capsys.readouterr().err
    assert code == 1
    assert_one_line_error(err, str(path), "line 4", "not UTF-8", "CSV UTF-8")
    (data / "segment_state.json").unlink()  # segment would cut the sheets again: the manifest stops it first
    assert main(["segment", str(sheets["a"][0].parent), "-o", str(data), "--json"]) == 1
    assert_one_line_error(capsys.readouterr().err, str(path), "line 4", "not UTF-8")
    assert path.read_bytes() == before


def test_bad_rows_name_their_line(data, capsys):
    def break_row(rows):
        rows[6]["label"] = "seven"
        return COLUMNS

    rewrite_manifest(data, break_row)
    code = main(["label", "x.png", "--label", "1", "-d", str(data)])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "line 8", "seven")


def test_label_with_a_mistyped_data_dir_creates_nothing(tmp_path, capsys):
    typo = tmp_path / "dta"
    code = main(["label", "x.png", "--label", "1", "-d", str(typo)])
    assert code == 1 and not typo.exists()
    assert_one_line_error(capsys.readouterr().err, str(typo))


# ---- D7: a failing hook keeps the finished work ----------------------------------------------------------


@pytest.mark.slow
def test_a_failing_sheet_hook_keeps_the_manifest(sheets, tmp_path, capsys):
    plugin = tmp_path / "plugins" / "broken_hook.py"
    plugin.parent.mkdir()
    plugin.write_text(
        "import mnistp4\n\n@mnistp4.hookimpl\ndef on_sheet_processed(sheet_path, digits, error):\n"
        "    raise RuntimeError('the hook broke')\n"
    )
    data = tmp_path / "data"
    code = main(["--plugins-dir", str(plugin.parent), "segment", str(sheets["a"][0].parent), "-o", str(data)])
    err = capsys.readouterr().err
    assert code == 1 and "the hook broke" in err and "Traceback" not in err
    assert sheets_in(data) == {p.name for p in sheets["a"]} and len(read_manifest(data)) == 40
    state = json.loads((data / "segment_state.json").read_text())
    assert len(state["sheets"]) == 2  # the next run skips them: the work is kept, not redone


# ---- D8-D9: worker processes die with the command --------------------------------------------------------


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def alive(pids: list[int]) -> list[int]:
    out = []
    for p in pids:
        try:
            state = (Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(p)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_die_with_segment(sig, semeion_dir, tmp_path):
    raw = tmp_path / "raw"
    make_sheets(raw, semeion_dir, 8, seed=5, per_row=6)  # enough work that the pool is still busy when hit
    proc = mnistp4("segment", raw, "-o", tmp_path / "data", "--workers", "3", cwd=tmp_path)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = (
            [
                p
                for p in children_of(proc.pid)
                if "multiprocessing" in (Path("/proc") / str(p) / "cmdline").read_bytes().decode(errors="replace")
            ]
            if proc.poll() is None
            else []
        )
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert len(workers) >= 2, f"the workers did not start: {proc.poll()} {proc.stderr.read() if proc.poll() else ''}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    gone_by = time.monotonic() + 15
    while alive(workers) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert alive(workers) == []
    if sig == signal.SIGTERM:
        assert proc.returncode == 1, (proc.returncode, err)
        assert_one_line_error(err, "stopped (SIGTERM)")
