"""``/try``: the board's answer in the browser.

* ``/api/try`` equals the firmware's host program (firmware/host/fwhost.c: the C normalizer, model
  input, softmax, raw bars, decision and screen text, built with gcc) on 130 canvases of the board's
  size, field by field and bit for bit. ESP-DL does not run on the host, so the Int8 outputs come
  from the Python integer interpreter on the same file (as in test_firmware_host.py): the model
  outputs themselves are compared with esp-ppq by ``quantize``'s verification, not here.
* Saving a correction writes a ``try:<writer>`` digit through the manifest's lock and rules: it is
  on the review page, a decision made there survives the next save, and ``mnistp4 segment`` keeps
  both digits and the decision when it rewrites the manifest.
* In Chromium a small off-centre 7 drawn with the mouse shows 7 in the chart; a European 1 that the
  model misreads, saved with "Wrong, it was 1", appears in the manifest with label 1.
* "Update model" runs the update in the background and switches ``/try`` to the new verified file:
  with a stand-in update (deployable or not), and in Chromium with the real one on the tiny run.
"""

from __future__ import annotations

import io
import json
import time

import cv2
import numpy as np
import pytest
from fwcore import Core, fwhost_request, random_canvas, run_fwhost
from test_update import project  # noqa: F401 - the tiny run, quantized, with corrections to learn
from test_web_browser import browser, find_browser, wait_for  # noqa: F401 - fixtures shared with the page tests

from mnistp4.stages.web.serve import build_web_app
from mnistp4.stages.web.try_page import BRUSH_RADIUS, CANVAS_SIDE, STATES

CANVASES = 130
STATE_CODES = {v: k for k, v in STATES.items()}


def png(canvas: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", canvas)
    assert ok
    return data.tobytes()


@pytest.fixture
def web(make_app, tmp_path, tiny_espdl):
    app = make_app()
    return build_web_app(app, raw_dir=tmp_path / "raw", data_dir=tmp_path / "data", model_file=str(tiny_espdl.path))


def post_headers(web) -> dict:
    return {"X-CSRF-Token": web.extensions["mnistp4"]["settings"].guard.csrf_token}


def ask(client, web, canvas: np.ndarray) -> dict:
    r = client.post("/api/try", data=png(canvas), headers={**post_headers(web), "Content-Type": "image/png"})
    assert r.status_code == 200, r.json
    return r.json


def brush_canvases(core: Core, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Strokes drawn with the firmware's own brush (dc_draw_segment, radius 14) on a 448x448 canvas,
    from small to large and anywhere on it, plus a filled blob (the scribble rule)."""
    out = []
    for i in range(n):
        c = np.zeros((CANVAS_SIDE, CANVAS_SIDE), np.uint8)
        size = int(rng.integers(40, 400))
        x0, y0 = (int(v) for v in rng.integers(0, CANVAS_SIDE - size, 2))
        for _ in range(int(rng.integers(1, 3))):
            pts = rng.integers(0, size, (int(rng.integers(2, 6)), 2)) + (x0, y0)
            for a, b in zip(pts[:-1], pts[1:]):
                core.draw_segment(c, a, b, BRUSH_RADIUS)
        if i % 20 == 0:
            c[100:300, 100:300] = 255
        out.append(c)
    return out


@pytest.mark.slow
def test_api_try_equals_the_firmware_host_program_on_130_canvases(web, tiny_espdl, fw_core, fwhost_host):
    core, host = fw_core, fwhost_host
    rng = np.random.default_rng(20)
    canvases = [np.zeros((CANVAS_SIDE, CANVAS_SIDE), np.uint8)] + brush_canvases(core, rng, 70)
    while len(canvases) < CANVASES:  # the firmware core tests' varied canvases, board-sized
        c = random_canvas(rng)
        if c.dtype == np.uint8 and c.shape == (CANVAS_SIDE, CANVAS_SIDE):
            canvases.append(c)
    client = web.test_client()
    answers = [ask(client, web, c) for c in canvases]
    assert {a["model"] for a in answers} == {str(tiny_espdl.path)}
    request = fwhost_request(tiny_espdl.path.read_bytes(), canvases, [a["outputs"] for a in answers])
    head, records = run_fwhost(host, request)
    assert head["name"] == "ok"
    for i, (a, rec) in enumerate(zip(answers, records)):
        assert np.array_equal(rec["image"], np.array(a["input28"], np.uint8)), i
        assert np.frombuffer(rec["input"], np.int8).tolist() == np.ravel(a["model_input"]).tolist(), i
        assert rec["ran"] == a["ran"], i
        assert rec["probs"].tobytes() == np.float32(a["scores"]).tobytes(), i
        assert rec["raw"].tobytes() == np.float32(a["raw"]).tobytes(), i
        assert rec["confidence"] == np.float32(a["confidence"]), i
        assert (rec["state"], rec["digit"]) == (STATE_CODES[a["board_state"]], a["best"]), i
        assert (rec["answer"], rec["status"]) == (a["answer"], a["status"]), i
    states = {a["board_state"] for a in answers}
    assert states == {"empty", "digit", "unsure", "scribble"}, states  # every branch of the rule was compared


def test_api_try_refuses_what_the_board_cannot_draw(web):
    client = web.test_client()
    h = post_headers(web)
    assert (
        client.post(
            "/api/try", data=png(np.zeros((448, 448), np.uint8)), headers={"Content-Type": "image/png"}
        ).status_code
        == 403
    )  # no CSRF token
    assert client.post("/api/try", data=b"x", headers={**h, "Content-Type": "text/plain"}).status_code == 415
    assert client.post("/api/try", data=b"not a png", headers={**h, "Content-Type": "image/png"}).status_code == 400
    small = client.post(
        "/api/try", data=png(np.zeros((100, 100), np.uint8)), headers={**h, "Content-Type": "image/png"}
    )
    assert small.status_code == 400 and "448x448" in small.json["error"]
    empty = ask(client, web, np.zeros((448, 448), np.uint8))
    assert (empty["state"], empty["digit"], empty["answer"], empty["ran"]) == ("empty", None, "", False)


def seven(x: int, y: int, scale: float = 1.0) -> list[tuple[int, int]]:
    """A 7 as a polyline: the bar, then the stem down to the left."""
    return [(x, y), (x + int(110 * scale), y), (x + int(40 * scale), y + int(170 * scale))]


def test_saved_corrections_follow_the_manifest_rules_and_show_on_review(web, tmp_path, monkeypatch):
    from mnistp4.stages.data import manifest as mf

    client = web.test_client()
    h = post_headers(web)
    data = tmp_path / "data"
    canvas = np.zeros((448, 448), np.uint8)
    cv2.polylines(canvas, [np.array(seven(120, 80))], False, 255, 29)

    def save(c, label, writer="anna"):
        return client.post(
            "/api/try/digits",
            headers=h,
            data={"label": str(label), "writer": writer, "image": (io.BytesIO(png(c)), "c.png", "image/png")},
        )

    assert save(canvas, 7, writer="../x").status_code == 400
    assert save(canvas, 12).status_code == 400
    assert save(np.zeros((448, 448), np.uint8), 3).status_code == 400  # nothing drawn
    assert client.post("/api/try/digits", data={"label": "7"}).status_code == 403  # no CSRF token
    r = save(canvas, 7)
    assert r.status_code == 201, r.json
    key = r.json["digit"]["sheet_hash"]
    row = next(r for r in mf.read_manifest(data) if r["sheet_hash"] == key)
    assert (row["label"], row["source"], row["flags"], row["decision"]) == (7, "try:anna", "", "")
    assert cv2.imread(str(data / row["path"]), cv2.IMREAD_GRAYSCALE).tolist() == ask(client, web, canvas)["input28"]
    assert cv2.imread(str(data / row["sheet"]), cv2.IMREAD_GRAYSCALE).shape == (448, 448)
    # on the review page, and a decision made there is kept when the next digit is saved
    listing = client.get("/api/digits").json
    assert any(d["sheet_hash"] == key and d["source"] == "try:anna" for d in listing["digits"])
    assert client.post(f"/api/digits/{key}/0/0", json={"label": 1}, headers=h).status_code == 200
    other = canvas.copy()
    cv2.line(other, (300, 300), (330, 400), 255, 29)
    assert save(other, 4, writer="ben").status_code == 201
    rows = {r["sheet_hash"]: r for r in mf.read_manifest(data)}
    assert len(rows) == 2 and rows[key]["label"] == 1 and rows[key]["decision"] == "relabeled"
    # segment's merge keeps the digits of other sources: the saved ones are entered there, and a
    # segment run rewrites the manifest with them and the decision
    state = json.loads((data / "segment_state.json").read_text())
    assert {r["sheet_hash"] for s in state["sheets"].values() for r in s["rows"]} == set(rows)
    from mnistp4.cli import main

    (tmp_path / "raw").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["segment", str(tmp_path / "raw"), "-o", str(data)]) == 0
    assert {r["sheet_hash"]: (r["label"], r["source"]) for r in mf.read_manifest(data)} == {
        key: (1, "try:anna"),
        next(k for k in rows if k != key): (4, "try:ben"),
    }


def test_update_button_switches_try_to_the_new_verified_file(web, tiny_espdl, tmp_path, monkeypatch):
    """The page's update job runs in the background and switches /try only to a deployable file."""
    import shutil

    from mnistp4.stages.training import update as upd

    newer = tmp_path / "runs" / "tiny-update-1" / "model_int8.espdl"
    newer.parent.mkdir(parents=True)
    shutil.copy(tiny_espdl.path, newer)
    calls = []

    def fake_update(app, run_dir, *, data_dir, on_progress, quiet):
        calls.append(run_dir)
        on_progress("finetune", 0.5, "fine-tuning")
        return {"deployable": len(calls) == 1, "after_model": str(newer)}

    monkeypatch.setattr(upd, "update_run", fake_update)
    client = web.test_client()
    job = web.extensions["mnistp4"]["update_job"]
    assert client.post("/api/update").status_code == 403  # CSRF like every POST
    assert client.post("/api/update", headers=post_headers(web)).status_code == 202
    job.join(30)
    status = client.get("/api/update").json
    assert not status["running"] and status["error"] is None and "fine-tuning" in status["messages"]
    assert calls == [tiny_espdl.path.parent]
    assert client.get("/api/try/model").json["model"] == str(newer) == status["switched_to"]
    canvas = np.zeros((448, 448), np.uint8)
    cv2.polylines(canvas, [np.array(seven(120, 80))], False, 255, 29)
    assert ask(client, web, canvas)["model"] == str(newer)
    # a second update that is not deployable leaves /try where it was
    web.extensions["mnistp4"]["try_model"].switch(tiny_espdl.path)
    assert client.post("/api/update", headers=post_headers(web)).status_code == 202
    job.join(30)
    assert client.get("/api/try/model").json["model"] == str(tiny_espdl.path)


# -- in Chromium ------------------------------------------------------------------------------------


@pytest.fixture
def live(web):
    import threading

    from mnistp4.stages.web.lan_server import make_lan_server

    srv = make_lan_server("127.0.0.1", 0, web)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=10)


def draw(driver, element, points):
    from selenium.webdriver.common.action_chains import ActionChains

    half = CANVAS_SIDE // 2
    chain = (
        ActionChains(driver, duration=10)
        .move_to_element_with_offset(element, points[0][0] - half, points[0][1] - half)
        .click_and_hold()
    )
    for (xa, ya), (xb, yb) in zip(points[:-1], points[1:]):
        for t in np.linspace(0, 1, 8)[1:]:
            chain = chain.move_to_element_with_offset(
                element, int(xa + t * (xb - xa)) - half, int(ya + t * (yb - ya)) - half
            )
    chain.release().perform()


@pytest.mark.slow
def test_browser_draws_a_small_off_centre_7_and_saves_a_correction(browser, live, web, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    from mnistp4.stages.data import manifest as mf

    browser.get(live + "/try")
    pad = browser.find_element(By.ID, "pad")
    assert pad.size["width"] == CANVAS_SIDE  # one CSS pixel per board pixel in this window
    draw(browser, pad, seven(40, 40, 0.7))  # ~80x120 px in the top-left corner
    wait_for(browser, lambda d: d.find_element(By.ID, "answer").text == "7", "the chart to show 7")
    assert browser.find_element(By.ID, "bars").get_attribute("data-winner") == "7"
    # the 28x28 the page shows is the normalizer's, centred although the drawing is not
    sent = browser.execute_script("return document.getElementById('pad').toDataURL('image/png');")
    import base64

    canvas = cv2.imdecode(np.frombuffer(base64.b64decode(sent.split(",")[1]), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert canvas[:200, :200].any() and not canvas[250:, 250:].any()
    # a European 1 (flag and stem), which this MNIST-trained model misreads, saved as a correction
    browser.find_element(By.ID, "clear").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "answer").text == "", "the cleared answer")
    draw(browser, pad, [(180, 160), (260, 80), (260, 380)])
    wait_for(browser, lambda d: d.find_element(By.ID, "answer").text != "", "an answer for the 1")
    time.sleep(0.5)  # the answer to the finished stroke
    assert browser.find_element(By.ID, "answer").text != "1"
    browser.find_element(By.ID, "wrong-1").click()
    wait_for(browser, lambda d: "saved as 1" in d.find_element(By.ID, "save-status").text, "the save")
    rows = mf.read_manifest(tmp_path / "data")
    assert [(r["label"], r["source"]) for r in rows] == [(1, "try:browser")]


@pytest.mark.slow
def test_browser_update_button_runs_a_real_update_and_tries_the_new_file(browser, project, tmp_path, monkeypatch):  # noqa: F811
    """The "Update model" button, end to end: the real ``mnistp4 update`` (the tiny one-epoch run,
    10 saved corrections) fine-tunes, quantizes and verifies in the server's background thread;
    the page shows its progress, then names the new verified file and answers with it."""
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mnistp4.stages.training import update as upd
    from mnistp4.stages.web.lan_server import make_lan_server

    app, run, data = project
    monkeypatch.setattr(upd, "MAX_MNIST_DROP", 100.0)  # a one-epoch model may lose MNIST accuracy
    web = build_web_app(app, raw_dir=tmp_path / "raw", data_dir=data, model_file=str(run / "model_int8.espdl"))
    srv = make_lan_server("127.0.0.1", 0, web)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{srv.server_port}/try")
        wait_for(browser, lambda d: d.find_element(By.ID, "model").text.endswith("model_int8.espdl"), "the model")
        assert browser.find_element(By.ID, "model").text == str(run / "model_int8.espdl")
        browser.find_element(By.ID, "update").click()
        wait_for(browser, lambda d: not d.find_element(By.ID, "update").is_enabled(), "the update to start")
        new = run.parent / f"{run.name}-update-1" / "model_int8.espdl"
        WebDriverWait(browser, 120, poll_frequency=0.2).until(
            lambda d: "Now trying" in d.find_element(By.ID, "update-status").text, "waited 120 s for the update"
        )
        assert browser.find_element(By.ID, "model").text == str(new) and new.is_file()
        assert browser.find_element(By.ID, "update").is_enabled()
        assert upd.verified_model(new.parent) == new  # verified and deployable
        pad = browser.find_element(By.ID, "pad")
        draw(browser, pad, seven(120, 80))
        wait_for(browser, lambda d: d.find_element(By.ID, "answer").text != "", "an answer from the new file")
        assert web.test_client().get("/api/try/model").json["model"] == str(new)
    finally:
        srv.shutdown()
