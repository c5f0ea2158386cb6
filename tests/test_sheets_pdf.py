"""PDF scans (a scanner's usual output): every page is a sheet, read like the same scan as an image."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mnistp4.cli import main
from mnistp4.errors import InputError
from mnistp4.stages.data.manifest import read_manifest
from mnistp4.stages.sheets.sheet_image import decode_sheet

REPO = Path(__file__).resolve().parents[1]
SCANS = ["c0a-scan-clean.png", "c0b-scan-mild.jpg"]
A4_WIDTH_INCHES = 210 / 25.4


def _pdf_of(paths: list[Path]) -> bytes:
    """The scans as the pages of one PDF, each page A4 wide (as a scanner writes them)."""
    pages = [Image.open(p).convert("L") for p in paths]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", resolution=pages[0].width / A4_WIDTH_INCHES, save_all=True, append_images=pages[1:])
    return buf.getvalue()


def _segment(raw: Path, data: Path, capsys) -> dict:
    code = main(["segment", str(raw), "-o", str(data), "--workers", "1", "--json"])
    return {"code": code, **json.loads(capsys.readouterr().out)}


def test_each_pdf_page_is_a_sheet_read_like_the_scan_itself(tmp_path, capsys):
    images, pdf = tmp_path / "images", tmp_path / "pdf"
    images.mkdir()
    pdf.mkdir()
    for name in SCANS:
        (images / name).write_bytes((REPO / "raw_scans" / name).read_bytes())
    (pdf / "scans.pdf").write_bytes(_pdf_of([REPO / "raw_scans" / n for n in SCANS]))
    (pdf / "damaged.pdf").write_bytes(b"%PDF-1.4\n% a scan cut short")

    direct = _segment(images, tmp_path / "data-images", capsys)
    from_pdf = _segment(pdf, tmp_path / "data-pdf", capsys)
    assert direct["code"] == 0 and direct["failed"] == 0
    assert from_pdf["code"] == 1  # the damaged file
    by = {r["sheet"]: r for r in from_pdf["results"]}
    assert by["scans.pdf#1"]["status"] == by["scans.pdf#2"]["status"] == "ok"
    assert by["damaged.pdf"]["status"] == "failed"
    assert by["damaged.pdf"]["error"].startswith("damaged.pdf: a PDF that cannot be opened")

    both = read_manifest(tmp_path / "data-pdf") + read_manifest(tmp_path / "data-images")
    rows = {(r["sheet"], r["row"], r["col"]): r for r in both}
    for page, scan in enumerate(SCANS, start=1):
        keys = [(k[1], k[2]) for k in rows if k[0] == scan]
        assert len(keys) == 100
        same, close = 0, []
        for row, col in keys:
            a, b = rows[(scan, row, col)], rows[(f"scans.pdf#{page}", row, col)]
            assert a["label"] == b["label"]
            same += ("empty" in a["flags"]) == ("empty" in b["flags"])
            if "empty" not in a["flags"] and "empty" not in b["flags"]:
                ia = cv2.imread(str(tmp_path / "data-images" / a["path"]), cv2.IMREAD_GRAYSCALE).astype(float)
                ib = cv2.imread(str(tmp_path / "data-pdf" / b["path"]), cv2.IMREAD_GRAYSCALE).astype(float)
                close.append(np.corrcoef(ia.ravel(), ib.ravel())[0, 1])
        assert same == 100  # the same boxes written and empty
        assert len(close) > 50 and np.median(close) > 0.9  # the same digits (resampled at the PDF's 200 dpi)


def test_a_pdf_without_pypdfium2_says_what_to_install(monkeypatch):
    data = _pdf_of([REPO / "raw_scans" / SCANS[0]])
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # as if the optional package were missing
    with pytest.raises(InputError, match=r"^scan\.pdf: reading PDF files needs the pypdfium2 package"):
        decode_sheet(data, "scan.pdf")


def test_pdf_pages_past_the_end_and_blank_pages_are_named(tmp_path):
    blank = Image.fromarray(np.full((1169, 827), 255, np.uint8))
    buf = io.BytesIO()
    blank.save(buf, "PDF", resolution=100)
    with pytest.raises(InputError, match=r"^blank\.pdf: the page is blank"):
        decode_sheet(buf.getvalue(), "blank.pdf")
    with pytest.raises(InputError, match=r"^blank\.pdf: has 1 page\(s\), page 2 was asked for"):
        decode_sheet(buf.getvalue(), "blank.pdf", page=1)
