"""The `mnistp4 serve` JSON API without a browser: layouts, sheet submission, review decisions, and
every kind of bad input (type, size, dimensions, ids, labels, paths)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnistp4.stages.data import manifest as _manifest
from mnistp4.stages.web.collect import _create_exclusive
from mnistp4.stages.web.serve import build_web_app

LAYOUT = "grid-10x10"
REPO = Path(__file__).resolve().parents[1]


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def project(make_app, tmp_path):
    app = make_app()
    return app, tmp_path / "raw", tmp_path / "data"


def csrf_client(web):
    """A test client that sends the CSRF token the pages carry (every POST needs it)."""
    client = web.test_client()
    client.environ_base["HTTP_X_CSRF_TOKEN"] = web.extensions["mnistp4"]["settings"].guard.csrf_token
    return client


@pytest.fixture
def client(project):
    app, raw, data = project
    web = build_web_app(app, raw_dir=raw, data_dir=data, no_model=True)
    return csrf_client(web)


def template_of(client, layout=LAYOUT):
    return client.application.extensions["mnistp4"]["templates"].get(layout)


def draw_sheet(template, digits: dict[tuple[int, int], int], *, rgba=True) -> bytes:
    """The template with simple pen strokes for some digits (0, 1, 7) at the page's pen width,
    as the browser would send it (RGBA PNG)."""
    img = cv2.cvtColor(template.image, cv2.COLOR_GRAY2BGRA if rgba else cv2.COLOR_GRAY2BGR)
    pen = int(round(template.pen_width()))
    ink = (0, 0, 0, 255) if rgba else (0, 0, 0)
    for b in template.boxes:
        d = digits.get((b.row, b.col))
        if d is None:
            continue
        cx, cy, ry, rx = b.x + b.w // 2, b.y + b.h // 2, int(0.3 * b.h), int(0.2 * b.w)
        if d == 0:
            cv2.ellipse(img, (cx, cy), (rx, ry), 0, 0, 360, ink, pen, cv2.LINE_AA)
        elif d == 1:
            cv2.line(img, (cx, cy - ry), (cx, cy + ry), ink, pen, cv2.LINE_AA)
        elif d == 7:
            pts = np.array([[cx - rx, cy - ry], [cx + rx, cy - ry], [cx - rx // 4, cy + ry]])
            cv2.polylines(img, [pts], False, ink, pen, cv2.LINE_AA)
        else:
            raise ValueError(d)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def submit(client, data: bytes | None, *, layout=LAYOUT, writer="alice", mimetype="image/png"):
    form = {}
    if layout is not None:
        form["layout"] = layout
    if writer is not None:
        form["writer"] = writer
    if data is not None:
        form["image"] = (io.BytesIO(data), "sheet.png", mimetype)
    return client.post("/api/sheets", data=form, content_type="multipart/form-data")


def make_data_dir(data: Path, n_per_label=2) -> list[dict]:
    """A small data dir as `segment` writes it: digit PNGs drawn with OpenCV's font, normalized by the
    project normalizer, one of them flagged."""
    from mnistp4.stages.data.normalizer import normalize_digit

    (data / "images").mkdir(parents=True)
    rows = []
    for label in range(10):
        for k in range(n_per_label):
            canvas = np.full((90, 80), 255, np.uint8)
            cv2.putText(canvas, str(label), (14, 72), cv2.FONT_HERSHEY_SIMPLEX, 2.4 + 0.3 * k, 0, 7, cv2.LINE_AA)
            name = f"images/abc123_{label}_{k}.png"
            cv2.imwrite(str(data / name), normalize_digit(canvas))
            rows.append(
                {
                    "path": name,
                    "label": label,
                    "source": "w1",
                    "sheet": "s1.png",
                    "sheet_hash": "abc123",
                    "row": label,
                    "col": k,
                    "flags": "small" if (label, k) == (4, 1) else "",
                    "decision": "",
                }
            )
    _manifest.write_manifest(data, rows)
    return rows


def tiny_onnx(path: Path, favourite: int) -> Path:
    """A real ONNX model (Flatten -> Gemm) whose logits always favour one class."""
    import onnx
    from onnx import TensorProto, helper

    w = np.zeros((784, 10), np.float32)
    b = np.zeros(10, np.float32)
    b[favourite] = 5.0
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
            helper.make_tensor("b", TensorProto.FLOAT, b.shape, b),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ---- layouts ----------------------------------------------------------------------------------


def test_layouts_describe_the_template(client):
    listing = client.get("/api/layouts").get_json()
    assert listing["default"] == LAYOUT and LAYOUT in listing["layouts"]
    geo = client.get(f"/api/layouts/{LAYOUT}").get_json()
    assert (geo["rows"], geo["cols"], len(geo["boxes"])) == (10, 10, 100)
    assert [b["digit"] for b in geo["boxes"] if b["col"] == 0] == list(range(10))
    png = client.get(geo["template"]).data
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (geo["height"], geo["width"])
    for b in geo["boxes"]:  # boxes lie on the page and the pen fits well inside them
        assert 0 <= b["x"] and b["x"] + b["w"] <= geo["width"] and b["y"] + b["h"] <= geo["height"]
        assert geo["pen_width"] * 8 < min(b["w"], b["h"])
    assert client.get("/api/layouts/no-such-layout").status_code == 404
    assert client.get("/api/layouts/no-such-layout/template.png").status_code == 404


# ---- submitting sheets --------------------------------------------------------------------------


def test_submitted_sheet_is_saved_and_segmented(client, project):
    app, raw, _ = project
    t = template_of(client)
    written = {(0, 0): 0, (0, 3): 0, (1, 0): 1, (7, 9): 7}
    r = submit(client, draw_sheet(t, written), writer="Tablet-1")
    assert r.status_code == 201, r.get_json()
    saved = r.get_json()
    assert saved["boxes_written"] == 4 and sorted(map(tuple, saved["cells"])) == sorted(written)
    assert files_in(raw) == sorted([saved["image"], saved["sidecar"]])
    # the sidecar is the one `segment` reads: the writer becomes the digits' source
    from mnistp4.stages.sheets.batch import sidecar

    side = sidecar(raw / saved["image"])
    assert side["source"] == "Tablet-1" and LAYOUT in side["note"] and saved["time"] in side["note"]
    meta = client.get(f"/api/sheets/{saved['id']}").get_json()
    assert (meta["layout"], meta["writer"], meta["time"]) == (LAYOUT, "Tablet-1", saved["time"])
    assert saved["time"].endswith("+00:00")
    assert [s["id"] for s in client.get("/api/sheets").get_json()["sheets"]] == [saved["id"]]

    sheet = cv2.imread(str(raw / saved["image"]), cv2.IMREAD_UNCHANGED)
    assert sheet.dtype == np.uint8 and sheet.ndim == 2 and sheet.shape == t.image.shape
    segment = app.get("segmenters", "template")
    layouts = {n: app.get("sheet_layouts", n) for n in app.registry.names("sheet_layouts")}
    digits = {(d.row, d.col): d for d in segment(sheet, layout=None, options={"layouts": layouts})}
    for cell, label in written.items():
        assert digits[cell].label == label and digits[cell].flags == [], (cell, digits[cell].flags)
        assert digits[cell].image.max() >= 200  # strokes reach (nearly) full white, as in MNIST
    assert digits[(5, 5)].flags == ["empty"]


def send_photo(client, data: bytes, filename="IMG_0001.jpg", writer="alice"):
    form = {"writer": writer, "image": (io.BytesIO(data), filename, "image/jpeg")}
    return client.post("/api/photos", data=form, content_type="multipart/form-data")


def test_a_phone_photo_of_a_paper_sheet_is_saved_and_segmented(client, project):
    """The example sheets' perspective photo sent from a phone: stored as sent with the writer's
    sidecar, all four corner squares reported; the next `segment` cuts it into 100 digits whose
    source is the writer. A photo turned by its EXIF tag, saved mirrored, or of a page with no
    markers is saved too, each with what it shows."""
    from mnistp4.stages.sheets.batch import sidecar
    from mnistp4.stages.sheets.segment import run_segment

    app, raw, data = project
    photo = (REPO / "raw_scans" / "c2a-photo-perspective.jpg").read_bytes()
    r = send_photo(client, photo, "IMG_0001.JPG", writer="phone-3")
    assert r.status_code == 201, r.get_json()
    saved = r.get_json()
    assert (saved["markers"], saved["layout"], saved["warning"]) == (4, LAYOUT, None)
    assert saved["image"].startswith("photo_phone-3_") and saved["image"].endswith(".jpg")
    assert (raw / saved["image"]).read_bytes() == photo  # as sent
    assert sidecar(raw / saved["image"])["source"] == "phone-3"
    summary = run_segment(app, raw, data, show_progress=False)
    rows = [r for r in _manifest.read_manifest(data) if r["sheet"] == saved["image"]]
    assert summary["failed"] == 0 and len(rows) == 100 and {r["source"] for r in rows} == {"phone-3"}

    mirrored = cv2.imencode(".jpg", cv2.imread(str(REPO / "raw_scans" / "c2a-photo-perspective.jpg"))[:, ::-1])[1]
    assert send_photo(client, mirrored.tobytes()).get_json()["markers"] == 4  # a front camera's picture
    page = np.full((900, 700), 255, np.uint8)
    cv2.putText(page, "0 1 2", (60, 300), cv2.FONT_HERSHEY_SIMPLEX, 3, 0, 8)
    no_markers = send_photo(client, cv2.imencode(".png", page)[1].tobytes(), "page.png").get_json()
    assert no_markers["markers"] == 0 and no_markers["image"].endswith(".png")
    assert "no corner squares" in no_markers["warning"]


@pytest.mark.parametrize(
    "payload, filename, writer, status, message",
    [
        (b"this is no photo", "IMG_0002.jpg", "alice", 415, "the photo cannot be used: not an image"),
        ("blank", "IMG_0003.jpg", "alice", 400, "the page is blank"),
        ("gif", "anim.gif", "alice", 415, "send the photo as JPEG, PNG or HEIC (this is GIF)"),
        ("blank", "IMG_0004.jpg", "al ice", 400, "writer id must be"),
        ("back", "IMG_0005.jpg", "alice", 400, "the back of a sheet: only its front shows through the paper"),
    ],
)
def test_photos_that_cannot_be_used_are_refused_with_the_reason(
    client, project, payload, filename, writer, status, message
):
    _, raw, _ = project
    if payload == "blank":
        payload = cv2.imencode(".jpg", np.full((800, 600), 250, np.uint8))[1].tobytes()
    elif payload == "back":  # an example sheet seen through the paper from behind: mirrored, faint, soft
        front = cv2.imread(str(REPO / "raw_scans" / "c0a-scan-clean.png"), cv2.IMREAD_GRAYSCALE)
        darkness = cv2.GaussianBlur(1 - front[:, ::-1].astype(np.float32) / 255, (0, 0), 3.0)
        payload = cv2.imencode(".jpg", (245 * (1 - 0.25 * darkness)).astype(np.uint8))[1].tobytes()
    elif payload == "gif":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.full((800, 600), 255, np.uint8)).save(buf, "GIF")
        payload = buf.getvalue()
    r = send_photo(client, payload, filename, writer=writer)
    assert r.status_code == status and message in r.get_json()["error"], r.get_json()
    assert not raw.exists() or files_in(raw) == []  # nothing stored


def test_rgb_and_rgba_uploads_give_the_same_grey_sheet(client, project):
    _, raw, _ = project
    t = template_of(client)
    a = submit(client, draw_sheet(t, {(1, 1): 1}, rgba=True)).get_json()
    b = submit(client, draw_sheet(t, {(1, 1): 1}, rgba=False)).get_json()
    assert a["id"] != b["id"]
    ia = cv2.imread(str(raw / a["image"]), cv2.IMREAD_UNCHANGED)
    ib = cv2.imread(str(raw / b["image"]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(ia, ib)


def test_transparency_is_white_paper_and_half_transparent_ink_is_blended():
    from mnistp4.stages.web.collect import to_grey

    img = np.zeros((2, 3, 4), np.uint8)  # black everywhere; alpha 0, 128, 255 across
    img[:, :, 3] = [0, 128, 255]
    img[1, :, :3] = (40, 80, 120)  # a blue-ish ink on the second row
    ink = int(cv2.cvtColor(np.uint8([[[40, 80, 120]]]), cv2.COLOR_BGR2GRAY)[0, 0])
    expected = [[255, round(255 * 127 / 255), 0], [255, round(ink * 128 / 255 + 255 * 127 / 255), ink]]
    assert to_grey(img).tolist() == expected


@pytest.mark.parametrize(
    "case, status, message",
    [
        ("no layout", 400, "layout"),
        ("unknown layout", 404, "unknown layout"),
        ("no image", 400, "image"),
        ("text file", 415, "PNG"),
        ("jpeg", 415, "PNG"),
        ("wrong mimetype", 415, "image/png"),
        ("wrong size", 400, "pixels"),
        ("truncated png", 400, "decoded"),
        ("blank sheet", 400, "nothing is written"),
        ("no writer", 400, "writer"),
        ("writer with a path", 400, "writer"),
        ("writer with spaces", 400, "writer"),
        ("writer too long", 400, "writer"),
        ("writer with an underscore", 400, "writer"),
    ],
)
def test_bad_sheet_uploads_are_refused(client, project, case, status, message):
    _, raw, _ = project
    t = template_of(client)
    good = draw_sheet(t, {(1, 0): 1})
    kwargs = {}
    data = good
    if case == "no layout":
        kwargs["layout"] = None
    elif case == "unknown layout":
        kwargs["layout"] = "grid-99x99"
    elif case == "no image":
        data = None
    elif case == "text file":
        data = b"hello, this is not an image"
    elif case == "jpeg":
        data = cv2.imencode(".jpg", t.image)[1].tobytes()
    elif case == "wrong mimetype":
        kwargs["mimetype"] = "image/jpeg"
    elif case == "wrong size":
        data = cv2.imencode(".png", cv2.resize(t.image, (620, 877)))[1].tobytes()
    elif case == "truncated png":
        data = good[: len(good) // 2]
    elif case == "blank sheet":
        data = cv2.imencode(".png", t.image)[1].tobytes()
    elif case == "no writer":
        kwargs["writer"] = ""
    elif case == "writer with a path":
        kwargs["writer"] = "../../etc/passwd"
    elif case == "writer with spaces":
        kwargs["writer"] = "a b"
    elif case == "writer too long":
        kwargs["writer"] = "w" * 33
    elif case == "writer with an underscore":
        kwargs["writer"] = "a_b"
    r = submit(client, data, **kwargs)
    assert r.status_code == status, r.get_json()
    assert message in r.get_json()["error"]
    assert files_in(raw) == []  # nothing half-saved


def test_upload_over_the_limit_is_413(project):
    app, raw, data = project
    web = build_web_app(app, raw_dir=raw, data_dir=data, no_model=True)
    web.config["MAX_CONTENT_LENGTH"] = 20_000
    web.extensions["mnistp4"]["settings"].max_upload_bytes = 20_000
    client = csrf_client(web)
    r = submit(client, draw_sheet(template_of(client), {(1, 0): 1}))
    assert r.status_code == 413 and "too large" in r.get_json()["error"]
    assert files_in(raw) == []
    # a phone photo has a limit of its own, larger: the example photo (about 150 KB) goes through
    photo = (REPO / "raw_scans" / "c2a-photo-perspective.jpg").read_bytes()
    assert len(photo) > 20_000 and send_photo(client, photo).status_code == 201
    web.extensions["mnistp4"]["settings"].max_photo_bytes = 30_000
    r = send_photo(client, photo)
    assert r.status_code == 413 and "the limit is 29 KiB" in r.get_json()["error"]


def test_sheet_ids_are_not_paths(client, project):
    _, raw, _ = project
    raw.mkdir(parents=True)
    (raw.parent / "secret.json").write_text('{"writer": "nobody"}')
    for sid in [
        "nope",
        "..%2Fsecret",
        "..",
        "%2e%2e%2fsecret",
        ".hidden",
        "tablet_grid-10x10_w_20260101T000000Z_0000000g",
        "tablet_grid-10x10_w_20261399T000000Z_00000000",
        "tablet_grid-10x10_w_20260101T000000Z_00000000",
    ]:  # malformed, bad date, well-formed but absent
        r = client.get(f"/api/sheets/{sid}")
        assert r.status_code == 404, sid
        assert "nobody" not in r.get_data(as_text=True)


def test_concurrent_submissions_never_clobber(project):
    """Eight tablets submit at once to a real threaded server: eight distinct, complete sheets."""
    from mnistp4.stages.web.lan_server import make_lan_server

    app, raw, data = project
    web = build_web_app(app, raw_dir=raw, data_dir=data, no_model=True)
    server = make_lan_server("127.0.0.1", 0, web)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        t = template_of(csrf_client(web))
        bodies = [draw_sheet(t, {(1, k): 1}) for k in range(8)]
        results: list = [None] * 8
        barrier = threading.Barrier(8)

        def post(i):
            boundary = "mnistp4boundary"
            parts = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="layout"\r\n\r\n{LAYOUT}\r\n'
                    f'--{boundary}\r\nContent-Disposition: form-data; name="writer"\r\n\r\nsame\r\n'
                    f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n'
                    f"Content-Type: image/png\r\n\r\n"
                ).encode()
                + bodies[i]
                + f"\r\n--{boundary}--\r\n".encode()
            )
            req = urllib.request.Request(
                f"http://127.0.0.1:{server.server_port}/api/sheets",
                data=parts,
                headers={
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "X-CSRF-Token": web.extensions["mnistp4"]["settings"].guard.csrf_token,
                },
            )
            barrier.wait(timeout=30)
            with urllib.request.urlopen(req, timeout=60) as resp:
                results[i] = (resp.status, json.loads(resp.read()))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert all(r is not None and r[0] == 201 for r in results), results
    names = {r[1]["image"] for r in results}
    assert len(names) == 8
    pngs = sorted(raw.glob("*.png"))
    assert len(pngs) == 8 and len(list(raw.glob("*.json"))) == 8
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no temporary files left
    cells = set()
    for r in results:
        img = cv2.imread(str(raw / r[1]["image"]), cv2.IMREAD_GRAYSCALE)
        assert img is not None and img.shape == t.image.shape
        cells.add(tuple(r[1]["cells"][0]))
    assert cells == {(1, k) for k in range(8)}  # each file holds its own tablet's drawing


def test_exclusive_create_never_replaces_a_file(tmp_path):
    target = tmp_path / "sheet.png"
    assert _create_exclusive(target, b"first")
    assert not _create_exclusive(target, b"second")
    assert target.read_bytes() == b"first"
    assert files_in(tmp_path) == ["sheet.png"]


# ---- reviewing digits ---------------------------------------------------------------------------


def test_listing_images_and_decisions(client, project):
    _, _, data = project
    make_data_dir(data)
    listing = client.get("/api/digits").get_json()
    assert listing["count"] == 20 and listing["model"] is None
    flagged = [d for d in listing["digits"] if d["flags"]]
    assert [(d["label"], d["col"], d["flags"], d["usable"]) for d in flagged] == [(4, 1, ["small"], False)]
    assert flagged[0]["suspicion"] > max(d["suspicion"] for d in listing["digits"] if not d["flags"])
    png = client.get(listing["digits"][0]["image"])
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert cv2.imdecode(np.frombuffer(png.data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (28, 28)

    r = client.post("/api/digits/abc123/3/0", json={"label": 8})
    assert r.status_code == 200 and r.get_json()["digit"]["label"] == 8
    assert client.post("/api/digits/abc123/5/1", json={"reject": True}).status_code == 200
    assert client.post("/api/digits/abc123/4/1", json={"accept": True}).get_json()["digit"]["usable"] is True
    rows = {(r["row"], r["col"]): r for r in _manifest.read_manifest(data)}
    assert (rows[(3, 0)]["label"], rows[(3, 0)]["decision"]) == (8, "relabeled")
    assert rows[(5, 1)]["decision"] == "rejected" and not _manifest.usable(rows[(5, 1)])
    assert rows[(4, 1)]["decision"] == "accepted" and _manifest.usable(rows[(4, 1)])
    decisions = _manifest.read_decisions(data)
    assert decisions[("abc123", 3, 0)] == {"label": 8, "decision": "relabeled"}
    # the listing follows the manifest (re-read after the change)
    after = {d["id"]: d for d in client.get("/api/digits").get_json()["digits"]}
    assert after["abc123/3/0"]["label"] == 8 and after["abc123/5/1"]["decision"] == "rejected"


def test_two_reviewers_deciding_one_digit_the_second_is_told_and_nothing_is_lost(client, project):
    """Two reviewers see the same digit; the first relabels it, the second (whose page still shows
    the old one) rejects it: the second gets 409 with the digit as it is now, and the first's label
    stays. A script that sends no ``seen`` decides as before."""
    _, _, data = project
    make_data_dir(data)
    shown = next(d for d in client.get("/api/digits").get_json()["digits"] if d["id"] == "abc123/3/0")
    seen = {"label": shown["label"], "decision": shown["decision"]}
    first = client.post("/api/digits/abc123/3/0", json={"label": 8, "seen": seen})
    assert first.status_code == 200 and first.get_json()["digit"]["label"] == 8
    second = client.post("/api/digits/abc123/3/0", json={"reject": True, "seen": seen})
    assert second.status_code == 409
    out = second.get_json()
    assert "changed meanwhile (now label 8, relabeled)" in out["error"] and out["digit"]["label"] == 8
    row = {(r["row"], r["col"]): r for r in _manifest.read_manifest(data)}[(3, 0)]
    assert (row["label"], row["decision"]) == (8, "relabeled")
    assert _manifest.read_decisions(data)[("abc123", 3, 0)] == {"label": 8, "decision": "relabeled"}
    # looking again (the page shows the answer's digit), the second reviewer's decision goes through
    again = {"label": out["digit"]["label"], "decision": out["digit"]["decision"]}
    assert client.post("/api/digits/abc123/3/0", json={"reject": True, "seen": again}).status_code == 200
    assert client.post("/api/digits/abc123/3/0", json={"label": 2}).status_code == 200  # no "seen": as before
    bad = client.post("/api/digits/abc123/3/0", json={"label": 2, "seen": {"lable": 2}})
    assert bad.status_code == 400 and "seen" in bad.get_json()["error"]


def test_a_digit_cut_again_since_the_page_showed_it_is_not_decided_on_the_old_picture(client, project):
    """A reviewer's page shows a digit; then `segment` cuts its sheet again (another image, another
    flag). Accepting it on the old picture is refused with 409 and the digit as it is now; the image
    URL is a new one, so the page loads the new picture; deciding on that goes through."""
    _, _, data = project
    rows = make_data_dir(data)
    shown = next(d for d in client.get("/api/digits").get_json()["digits"] if d["id"] == "abc123/4/1")
    assert shown["flags"] == ["small"] and client.get(shown["image"]).status_code == 200
    seen = {"label": shown["label"], "decision": shown["decision"], "version": shown["version"]}
    # the re-run: a new image for the digit and another flag, written as segment writes them
    with _manifest.data_dir_lock(data):
        image = data / rows[9]["path"]
        cv2.imwrite(str(image), 255 - cv2.imread(str(image), cv2.IMREAD_GRAYSCALE))
        rows[9]["flags"] = "crossed_out"
        _manifest.write_manifest(data, rows)
    refused = client.post("/api/digits/abc123/4/1", json={"accept": True, "seen": seen})
    assert refused.status_code == 409
    now = refused.get_json()["digit"]
    assert now["flags"] == ["crossed_out"] and now["version"] != shown["version"] and now["image"] != shown["image"]
    assert _manifest.read_decisions(data) == {}  # nothing recorded
    # only the flags changed, not the image: refused as well
    with _manifest.data_dir_lock(data):
        rows[9]["flags"] = "crossed_out;border"
        _manifest.write_manifest(data, rows)
    stale = {"label": now["label"], "decision": now["decision"], "version": now["version"]}
    assert client.post("/api/digits/abc123/4/1", json={"accept": True, "seen": stale}).status_code == 409
    # on the digit as it is now, the decision goes through
    current = next(d for d in client.get("/api/digits").get_json()["digits"] if d["id"] == "abc123/4/1")
    fresh = {"label": current["label"], "decision": current["decision"], "version": current["version"]}
    ok = client.post("/api/digits/abc123/4/1", json={"accept": True, "seen": fresh})
    assert ok.status_code == 200 and ok.get_json()["digit"]["decision"] == "accepted"
    assert ok.get_json()["digit"]["version"] == current["version"]  # a decision changes no picture


@pytest.mark.parametrize(
    "body, message",
    [
        ({"label": 10}, "0-9"),
        ({"label": -1}, "0-9"),
        ({"label": "3"}, "0-9"),
        ({"label": True}, "0-9"),
        ({"label": 3.0}, "0-9"),
        ({}, "nothing to record"),
        ({"labl": 3}, "unknown field"),
        ({"reject": "yes"}, "true or false"),
        ({"reject": True, "label": 2}, "reject stands alone"),
        ([3], "JSON object"),
        ("3", "JSON object"),
    ],
)
def test_bad_decisions_are_refused(client, project, body, message):
    _, _, data = project
    make_data_dir(data)
    before = (data / "manifest.csv").read_bytes()
    r = client.post("/api/digits/abc123/3/0", data=json.dumps(body), content_type="application/json")
    assert r.status_code == 400 and message in r.get_json()["error"]
    assert (data / "manifest.csv").read_bytes() == before
    assert not (data / "decisions.csv").exists()


def test_not_json_and_unknown_digits(client, project):
    _, _, data = project
    make_data_dir(data)
    r = client.post("/api/digits/abc123/3/0", data="label=3", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400
    for url in [
        "/api/digits/ffff00/3/0",
        "/api/digits/abc123/3/7",
        "/api/digits/abc123/99/0",
        "/api/digits/not-hex!/3/0",
        "/api/digits/..%2F..%2Fetc/3/0",
    ]:
        assert client.post(url, json={"label": 1}).status_code == 404, url
        assert client.get(url + ".png").status_code == 404, url
    assert client.get("/api/digits/abc123/-1/0.png").status_code == 404


def test_manifest_paths_outside_the_data_dir_are_not_served(client, project, tmp_path):
    _, _, data = project
    rows = make_data_dir(data)
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.full((28, 28), 200, np.uint8))
    rows[0]["path"] = "../secret.png"
    _manifest.write_manifest(data, rows)
    assert client.get("/api/digits/abc123/0/0.png").status_code == 404
    assert client.get("/api/digits/abc123/0/1.png").status_code == 200


def test_model_ranks_disagreements_first(make_app, tmp_path):
    """With a run's model.onnx (the newest in runs_dir) the listing carries predictions and sorts
    the digits the model disagrees with first."""
    app = make_app()
    data = tmp_path / "data"
    make_data_dir(data)
    tiny_onnx(app.config.path("runs_dir") / "r1" / "model.onnx", favourite=7)
    web = build_web_app(app, raw_dir=tmp_path / "raw", data_dir=data)
    listing = csrf_client(web).get("/api/digits").get_json()
    assert listing["model"].endswith("model.onnx")
    digits = listing["digits"]
    assert all(d["predicted"] == 7 and d["confidence"] > 0.9 for d in digits)
    sevens = [d["suspicion"] for d in digits if d["label"] == 7]
    others = [d["suspicion"] for d in digits if d["label"] != 7]
    assert max(sevens) < 0.1 < min(others)


# ---- the command ----------------------------------------------------------------------------------


def run_cli(root: Path, *args: str, timeout=60):
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("MNISTP4_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "mnistp4", *args], cwd=root, env=env, text=True, capture_output=True, timeout=timeout
    )


@pytest.mark.slow
def test_serve_usage_errors(tmp_path):
    (tmp_path / "mnistp4.toml").write_text("")
    r = run_cli(tmp_path, "serve", "--layout", "grid-3x3")
    assert r.returncode == 2 and "grid-3x3" in r.stderr and "grid-10x10" in r.stderr
    r = run_cli(tmp_path, "serve", "--model", "missing.onnx")
    assert r.returncode == 2 and "missing.onnx" in r.stderr


@pytest.mark.slow
def test_serve_binds_to_loopback_and_prints_the_urls(tmp_path):
    (tmp_path / "mnistp4.toml").write_text("")
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    env.pop("MNISTP4_PLUGINS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistp4", "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines, url = [], None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"collection page: (http://127\.0\.0\.1:\d+/collect)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        assert "listening on 127.0.0.1:" in "".join(lines)
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and b"Write digits" in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_decisions_do_not_rescore_and_a_broken_model_falls_back_to_flags(make_app, tmp_path):
    from mnistp4.stages.web.app import WebSettings, create_web_app
    from mnistp4.stages.web.review import onnx_predictor
    from mnistp4.stages.web.sheets import layout_names, render_template_for

    app = make_app()
    data = tmp_path / "data"
    make_data_dir(data)
    model = tiny_onnx(tmp_path / "run" / "model.onnx", favourite=2)
    scored = []

    def counting_loader(path):
        predict = onnx_predictor(path)

        def run(images):
            scored.append(len(images))
            return predict(images)

        return run

    def web_for(model_path):
        return csrf_client(
            create_web_app(
                WebSettings(
                    raw_dir=tmp_path / "raw",
                    data_dir=data,
                    default_layout=LAYOUT,
                    layout_names=lambda: layout_names(app),
                    get_template=lambda n: render_template_for(app, n),
                    model_path=model_path,
                    load_predictor=counting_loader,
                )
            )
        )

    client = web_for(model)
    assert client.get("/api/digits").get_json()["digits"][0]["predicted"] == 2
    assert client.post("/api/digits/abc123/3/0", json={"label": 2}).get_json()["digit"]["suspicion"] < 0.1
    client.get("/api/digits")
    assert scored == [20]  # every image scored once; decisions only change labels

    broken = tmp_path / "broken" / "model.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"not an onnx model")
    listing = web_for(broken).get("/api/digits").get_json()
    assert listing["model"] is None and "cannot use model" in listing["model_error"]
    assert all(d["predicted"] is None for d in listing["digits"])


def test_newest_run_model_is_found(tmp_path):
    from mnistp4.stages.web.review import newest_model

    assert newest_model(tmp_path / "no-runs") is None
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        d.mkdir()
    (old / "model.onnx").write_bytes(b"x")
    (new / "model.pt").write_bytes(b"x")
    (new / "model.onnx").write_bytes(b"x")
    os.utime(old / "model.onnx", ns=(1, 1_000_000_000))
    assert newest_model(tmp_path) == new / "model.onnx"  # the newest run, ONNX preferred
    (new / "model.onnx").unlink()
    assert newest_model(tmp_path) == new / "model.pt"


def test_api_errors_are_json(client):
    r = client.put("/api/sheets")
    assert r.status_code == 405 and "error" in r.get_json()
    r = client.get("/api/no-such-endpoint")
    assert r.status_code == 404 and "error" in r.get_json()
    assert client.get("/no-such-page").status_code == 404
