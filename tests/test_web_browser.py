"""The collection and review pages in a real browser: Debian's headless Chromium driven by Selenium.

A writer draws digits with a mouse, a finger (touch pointer) and a pen on the collection page and
submits; `mnistp4 segment` then finds those digits with the right labels. On the review page a
digit is relabelled and another rejected with the keyboard; the manifest shows both, also after
`segment` runs again.

These tests need `chromium` and `chromedriver` (Debian: `apt-get install -y chromium
chromium-driver`); without them they fail and say so. Set MNISTP4_WEB_SCREENSHOTS=docs/img to also
write the README's screenshots (collect.png, review.png) there.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import pytest

from mnistp4.stages.data import manifest as _manifest
from mnistp4.stages.web.serve import build_web_app

#: Chromium through Selenium: the whole module is slow
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

APT_LINE = "apt-get update && apt-get install -y chromium chromium-driver"
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
WINDOW = (1000, 1900)  # tall enough that the whole sheet canvas is in view
WAIT_S = 30


def find_browser() -> tuple[str, str]:
    chrome = os.environ.get("MNISTP4_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None
    )
    driver = (
        os.environ.get("MNISTP4_CHROMEDRIVER")
        or shutil.which("chromedriver")
        or ("/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").is_file() else None)
    )
    if not chrome or not driver or not Path(chrome).is_file() or not Path(driver).is_file():
        pytest.fail(
            f"the browser tests need Debian's Chromium and its driver, found chromium={chrome}, "
            f"chromedriver={driver}. Install them with `{APT_LINE}` (or point MNISTP4_CHROMIUM and "
            f"MNISTP4_CHROMEDRIVER at them); .ci/run does this when it runs as root."
        )
    return chrome, driver


def test_missing_browser_fails_with_the_install_line(monkeypatch):
    """No Chromium: the browser tests fail (never skip) and say how to install it."""
    monkeypatch.setenv("MNISTP4_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        find_browser()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, driver_path = find_browser()
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def serve(make_app, tmp_path):
    """Start `mnistp4 serve`'s app on a free loopback port, in a thread: ``serve(model=None)``."""
    from mnistp4.stages.web.lan_server import make_lan_server

    servers = []

    def start(model: Path | None = None) -> dict:
        app = make_app()
        raw, data = tmp_path / "raw", tmp_path / "data"
        web = build_web_app(app, raw_dir=raw, data_dir=data, model_file=model, no_model=model is None)
        srv = make_lan_server("127.0.0.1", 0, web)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        servers.append((srv, thread))
        return {
            "url": f"http://127.0.0.1:{srv.server_port}",
            "raw": raw,
            "data": data,
            "app": app,
            "root": app.root,
            "web": web,
        }

    yield start
    for srv, thread in servers:
        srv.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def server(serve):
    return serve()


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message=f"waited {WAIT_S}s for {what}")


def wait_until(check, what: str, timeout=WAIT_S):
    """Poll a condition outside the browser (a file changing), a bounded number of times."""
    for _ in range(int(timeout / 0.05)):
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout}s for {what}")


def body_data(driver, key: str) -> str | None:
    return driver.execute_script(f"return document.body.dataset[{key!r}] || null;")


def wait_written(driver, n: int):
    """The page counts boxes with ink after each redraw (next animation frame)."""
    wait_for(driver, lambda drv: body_data(drv, "written") == str(n), f"{n} boxes to be written")


# ---- drawing ----------------------------------------------------------------------------------


#: pen strokes of a few digits in unit box coordinates (0..1 inside the drawable part of a box)
def ellipse(cx, cy, rx, ry, n=18):
    return [(cx + rx * math.sin(2 * math.pi * k / n), cy - ry * math.cos(2 * math.pi * k / n)) for k in range(n + 1)]


GLYPHS = {
    0: [ellipse(0.5, 0.5, 0.28, 0.4)],
    1: [[(0.42, 0.2), (0.55, 0.1), (0.55, 0.5), (0.55, 0.9)]],
    4: [[(0.55, 0.1), (0.2, 0.62), (0.8, 0.62)], [(0.62, 0.35), (0.62, 0.92)]],
    7: [[(0.2, 0.12), (0.8, 0.12), (0.6, 0.4), (0.42, 0.9)]],
}


#: the longest pointer move of a drawn stroke, in screen pixels
STEP_PX = 12


def draw(driver, canvas, rect_px, strokes, kind="mouse", source_size=None):
    """Draw strokes given in unit coordinates of ``rect_px`` (x, y, w, h in the canvas's own pixels)
    with a mouse, a touch pointer or a pen, through WebDriver's pointer actions."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    kinds = {"mouse": interaction.POINTER_MOUSE, "touch": interaction.POINTER_TOUCH, "pen": interaction.POINTER_PEN}
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height, arguments[0].width, arguments[0].height];",
        canvas,
    )
    left, top, width, height, cw, ch = box
    x0, y0, w, h = rect_px

    def to_view(u, v):
        return int(round(left + (x0 + u * w) * width / cw)), int(round(top + (y0 + v * h) * height / ch))

    for points in strokes:
        builder = ActionBuilder(driver, mouse=PointerInput(kinds[kind], kind), duration=5)
        action = builder.pointer_action
        action.move_to_location(*to_view(*points[0]))
        action.pointer_down()
        for (pu, pv), (u, v) in zip(points, points[1:]):
            # steps of at most STEP_PX (each move takes the builder's 5 ms: a quick hand)
            (ax, ay), (bx, by) = to_view(pu, pv), to_view(u, v)
            steps = max(1, math.ceil(math.hypot(bx - ax, by - ay) / STEP_PX))
            for k in range(1, steps + 1):
                t = k / steps
                action.move_to_location(*to_view(pu + (u - pu) * t, pv + (v - pv) * t))
        action.pointer_up()
        builder.perform()


def layout_json(server, layout="grid-10x10"):
    return server["web"].test_client().get(f"/api/layouts/{layout}").get_json()


def inner_rect(geo, row, col):
    b = next(b for b in geo["boxes"] if (b["row"], b["col"]) == (row, col))
    m = geo["ink_margin"]
    return b["x"] + m, b["y"] + m, b["w"] - 2 * m, b["h"] - 2 * m


def flagged_sheet(template) -> bytes:
    """A tablet sheet with a tiny stroke (small), two far-apart strokes (multi) and a blot (large)."""
    img = template.image.copy()
    pen, m = int(round(template.pen_width())), template.ink_margin()
    boxes = {(b.row, b.col): b for b in template.boxes}
    b = boxes[(1, 5)]
    cv2.line(img, (b.x + b.w // 2, b.y + b.h // 2 - 4), (b.x + b.w // 2, b.y + b.h // 2 + 4), 0, pen, cv2.LINE_AA)
    b = boxes[(2, 5)]
    cv2.line(img, (b.x + m + 5, b.y + m + 5), (b.x + m + 15, b.y + m + 15), 0, pen, cv2.LINE_AA)
    cv2.line(img, (b.x + b.w - m - 15, b.y + b.h - m - 15), (b.x + b.w - m - 5, b.y + b.h - m - 5), 0, pen, cv2.LINE_AA)
    b = boxes[(3, 5)]
    cv2.rectangle(img, (b.x + m, b.y + m), (b.x + b.w - m, b.y + b.h - m), 0, -1)
    return cv2.imencode(".png", img)[1].tobytes()


def run_segment(server):
    """``mnistp4 segment`` on the server's folders, as its own process beside the running server
    (one process: a few sheets, and the worker processes are tested elsewhere)."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("MNISTP4_PLUGINS", None)
    r = subprocess.run(
        [sys.executable, "-m", "mnistp4", "segment", str(server["raw"]), "-o", str(server["data"]), "--workers", "1"],
        cwd=server["root"],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, f"mnistp4 segment failed:\n{r.stdout}\n{r.stderr}"
    return r


def save_screenshot(driver, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 500 and img.shape[1] > 500
    target = os.environ.get("MNISTP4_WEB_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    return path


# ---- the test -----------------------------------------------------------------------------------


def test_collect_segment_review_in_chromium(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = browser
    geo = layout_json(server)

    # -- collection page: the whole sheet, three input kinds -----------------------------------
    d.get(server["url"] + "/collect")
    wait_for(d, lambda drv: body_data(drv, "ready") == "1", "the collection page to load its layout")
    writer = d.find_element(By.ID, "writer")
    writer.clear()
    writer.send_keys("tablet-7")
    sheet = d.find_element(By.ID, "sheet")
    draw(d, sheet, inner_rect(geo, 0, 0), GLYPHS[0], "mouse")
    draw(d, sheet, inner_rect(geo, 1, 0), GLYPHS[1], "touch")
    wait_written(d, 2)
    # a scribble in another box, then "Clear box" removes it (the box drawn last is the current one)
    draw(d, sheet, inner_rect(geo, 5, 5), GLYPHS[0], "mouse")
    wait_written(d, 3)
    d.find_element(By.ID, "clear").click()
    wait_written(d, 2)
    draw(d, sheet, inner_rect(geo, 7, 0), GLYPHS[7], "touch")
    wait_written(d, 3)

    # -- one box at a time: the enlarged box, next, undo --------------------------------------------
    d.find_element(By.ID, "mode").click()
    wait_for(d, lambda drv: body_data(drv, "mode") == "box", "the single-box view")
    d.find_element(By.ID, "next").click()  # from (7, 0), the box drawn last, to (7, 1)
    assert "Write 7" in d.find_element(By.ID, "prompt").text
    box_canvas = d.find_element(By.ID, "box")
    full = (0, 0, box_canvas.get_property("width"), box_canvas.get_property("height"))
    unit = [(0.25 + 0.5 * u, 0.25 + 0.5 * v) for u, v in GLYPHS[7][0]]  # inside the box's drawable part
    draw(d, box_canvas, full, [[(0.3, 0.5), (0.7, 0.5)]], "mouse")  # a stray stroke...
    wait_written(d, 4)
    d.find_element(By.ID, "undo").click()  # ...undone
    wait_written(d, 3)
    draw(d, box_canvas, full, [unit], "pen")
    wait_written(d, 4)
    d.find_element(By.ID, "mode").click()
    wait_for(d, lambda drv: body_data(drv, "mode") == "grid", "the whole-sheet view")
    draw(d, sheet, inner_rect(geo, 4, 0), GLYPHS[4], "pen")
    wait_written(d, 5)
    # once a stylus is in use, a touch is a resting palm and draws nothing (checked after segmenting)
    draw(d, sheet, inner_rect(geo, 6, 6), GLYPHS[0], "touch")
    save_screenshot(d, "collect.png", tmp_path)

    d.find_element(By.ID, "submit").click()
    sheet_id = wait_for(d, lambda drv: body_data(drv, "lastSheet"), "the sheet to be saved")
    assert "Saved as" in d.find_element(By.ID, "status").text
    wait_written(d, 0)  # blank again for the next writer
    saved = sorted(p.name for p in server["raw"].iterdir())
    assert saved == [f"{sheet_id}.json", f"{sheet_id}.png"]

    # -- the next `mnistp4 segment` finds the digits with their row's labels ---------------------
    run_segment(server)
    rows = [r for r in _manifest.read_manifest(server["data"]) if r["sheet"].startswith(sheet_id)]
    by_cell = {(r["row"], r["col"]): r for r in rows}
    drawn = {(0, 0): 0, (1, 0): 1, (4, 0): 4, (7, 0): 7, (7, 1): 7}
    for cell, label in drawn.items():
        assert cell in by_cell, f"digit at {cell} missing; manifest cells: {sorted(by_cell)}"
        assert by_cell[cell]["label"] == label and by_cell[cell]["flags"] == "", by_cell[cell]
        assert by_cell[cell]["source"], "every digit needs a source (writer) for the by-writer split"
        img = cv2.imread(str(server["data"] / by_cell[cell]["path"]), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (28, 28) and img.max() >= 200 and img[:, :2].max() == 0  # MNIST-style frame
    clean = {c for c, r in by_cell.items() if r["flags"] == ""}
    assert clean == set(drawn), f"only the drawn boxes hold clean digits; clean: {sorted(clean)}"
    sheet_hash = by_cell[(1, 0)]["sheet_hash"]

    # -- review page: relabel with a key, reject with x -------------------------------------------
    d.get(server["url"] + "/review")
    wait_for(d, lambda drv: body_data(drv, "ready") == "1", "the review page to load the digits")
    one = f"{sheet_hash}/1/0"
    tile = wait_for(d, lambda drv: drv.find_element(By.CSS_SELECTOR, f'figure.tile[data-id="{one}"]'), "the tile")
    assert tile.get_attribute("data-label") == "1"
    flagged = d.find_elements(By.CSS_SELECTOR, "figure.tile.flagged")
    assert not flagged  # empty boxes are hidden by default and the drawn digits are clean
    d.find_element(By.CSS_SELECTOR, '#filter option[value="all"]').click()
    flagged = wait_for(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, "figure.tile.flagged"), "empty boxes")
    flag_texts = d.execute_script(  # one round trip instead of one per tile
        "return Array.from(document.querySelectorAll('figure.tile.flagged .flag'), e => e.textContent.trim());"
    )
    assert len(flagged) == 100 - len(drawn) and len(flag_texts) == len(flagged) and set(flag_texts) == {"empty"}
    tile = d.find_element(By.CSS_SELECTOR, f'figure.tile[data-id="{one}"]')
    tile.click()
    ActionChains(d).send_keys("3").perform()
    wait_until(
        lambda: {(r["row"], r["col"]): r for r in _manifest.read_manifest(server["data"])}[(1, 0)]["label"] == 3,
        "the manifest to show label 3",
    )
    wait_for(
        d,
        lambda drv: drv.find_elements(By.CSS_SELECTOR, f'section[data-label="3"] figure[data-id="{one}"]'),
        "the tile to move to label 3",
    )
    four = f"{sheet_hash}/4/0"
    d.find_element(By.CSS_SELECTOR, f'figure.tile[data-id="{four}"]').click()
    ActionChains(d).send_keys("x").perform()
    wait_until(
        lambda: (
            {(r["row"], r["col"]): r for r in _manifest.read_manifest(server["data"])}[(4, 0)]["decision"] == "rejected"
        ),
        "the manifest to show the rejection",
    )

    # -- decisions survive re-segmenting ----------------------------------------------------------------
    run_segment(server)
    after = {(r["row"], r["col"]): r for r in _manifest.read_manifest(server["data"]) if r["sheet_hash"] == sheet_hash}
    assert (after[(1, 0)]["label"], after[(1, 0)]["decision"]) == (3, "relabeled")
    assert after[(4, 0)]["decision"] == "rejected" and not _manifest.usable(after[(4, 0)])
    assert after[(0, 0)]["label"] == 0 and after[(0, 0)]["decision"] == ""

    # -- a phone photo of a paper sheet, sent from the collection page's file picker -----------------
    d.get(server["url"] + "/collect")
    wait_for(d, lambda drv: body_data(drv, "ready") == "1", "the collection page to load its layout")
    d.find_element(By.ID, "photo").send_keys(str(REPO / "raw_scans" / "c2a-photo-perspective.jpg"))
    d.find_element(By.ID, "send-photo").click()
    photo_id = wait_for(d, lambda drv: body_data(drv, "lastPhoto"), "the photo to be saved")
    assert "all 4 corner squares" in d.find_element(By.ID, "status").text
    assert (server["raw"] / f"{photo_id}.jpg").read_bytes() == (
        REPO / "raw_scans" / "c2a-photo-perspective.jpg"
    ).read_bytes()


def test_review_page_on_example_sheets(browser, serve, tmp_path):
    """Real handwriting (two of the shipped example sheets): empty boxes hidden, flagged digits
    first in their group, the flagged filter, accepting with `a` and relabelling with a button."""
    from selenium.webdriver.common.by import By

    examples = Path(__file__).resolve().parents[1] / "raw_scans"
    names = ["c0a-scan-clean", "c2b-photo-hard"]
    sheets = [p for n in names for p in examples.glob(f"{n}.*")]
    assert len(sheets) == 4, f"the example sheets {names} (+ sidecars) are missing from {examples}"
    model = os.environ.get("MNISTP4_WEB_REVIEW_MODEL")  # a trained model.onnx, for the README screenshot
    server = serve(Path(model) if model else None)
    server["raw"].mkdir()
    for p in sheets:
        shutil.copyfile(p, server["raw"] / p.name)
    # plus a tablet sheet with three digits the QA flags catch: too small, two parts, a blot
    client = server["web"].test_client()
    token = server["web"].extensions["mnistp4"]["settings"].guard.csrf_token
    sent = client.post(
        "/api/sheets",
        content_type="multipart/form-data",
        headers={"X-CSRF-Token": token},
        data={
            "layout": "grid-10x10",
            "writer": "careless",
            "image": (
                io.BytesIO(flagged_sheet(server["web"].extensions["mnistp4"]["templates"].get("grid-10x10"))),
                "s.png",
                "image/png",
            ),
        },
    )
    assert sent.status_code == 201, sent.get_json()
    run_segment(server)
    rows = _manifest.read_manifest(server["data"])
    inked = [r for r in rows if "empty" not in r["flags"]]
    flagged = [r for r in inked if r["flags"]]
    # the three careless digits (a blot, a tiny one, two in one box) are flagged, and only they
    # (the blot reads as `large` or, ink over a digit, `crossed_out`); on the example sheets the
    # sheet checker may doubt a few European forms (a 7 with its bar, a 9 like a p), nothing else:
    # 6 of their 200 digits since its thresholds were chosen on the realistic sheets (4 before)
    examples_flagged = [r for r in flagged if any(n in r["sheet"] for n in names)]
    assert len(examples_flagged) <= 6
    assert all(set(r["flags"].split(";")) <= {"crossed_out", "unlike_label"} for r in examples_flagged)
    flags = [set(r["flags"].split(";")) for r in flagged if r not in examples_flagged]
    assert len(flags) == 3
    assert sum("multi" in f for f in flags) == 1 and sum("small" in f for f in flags) == 1
    assert sum(bool(f & {"large", "crossed_out"}) and not f & {"multi", "small"} for f in flags) == 1
    assert len(inked) >= 190 + 3

    d = browser
    d.get(server["url"] + "/review")
    wait_for(d, lambda drv: body_data(drv, "ready") == "1", "the review page to load the digits")
    tiles = d.find_elements(By.CSS_SELECTOR, "figure.tile")
    assert len(tiles) == len(inked)
    groups = d.execute_script(  # per group, whether each tile is flagged, in page order (one round trip)
        "return Array.from(document.querySelectorAll('section.group'), s => [s.dataset.label,"
        " Array.from(s.querySelectorAll('figure.tile'), t => t.classList.contains('flagged'))]);"
    )
    assert sum(len(marks) for _, marks in groups) == len(inked)
    for label, marks in groups:  # most suspicious first
        assert marks == sorted(marks, reverse=True), label
    save_screenshot(d, "review.png", tmp_path)

    d.find_element(By.CSS_SELECTOR, '#filter option[value="flagged"]').click()
    shown = wait_for(d, lambda drv: drv.find_elements(By.CSS_SELECTOR, "figure.tile"), "flagged tiles")
    assert len(shown) == len(flagged) and d.execute_script(
        "return Array.from(document.querySelectorAll('figure.tile')).every(t => t.classList.contains('flagged'));"
    )
    target = shown[0].get_attribute("data-id")
    shown[0].click()
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(d).send_keys("a").perform()
    h, r, c = target.split("/")

    def row_of(key):
        return next(x for x in _manifest.read_manifest(server["data"]) if (x["sheet_hash"], x["row"], x["col"]) == key)

    wait_until(lambda: row_of((h, int(r), int(c)))["decision"] == "accepted", "the manifest to show the acceptance")
    assert _manifest.usable(row_of((h, int(r), int(c))))

    d.find_element(By.CSS_SELECTOR, '#filter option[value="ink"]').click()
    other = inked[0]
    key = (other["sheet_hash"], other["row"], other["col"])
    new_label = (other["label"] + 1) % 10
    wait_for(
        d,
        lambda drv: drv.find_element(By.CSS_SELECTOR, f'figure.tile[data-id="{"/".join(map(str, key))}"]'),
        "the tile",
    ).click()
    d.find_element(By.XPATH, f'//span[@id="label-buttons"]/button[text()="{new_label}"]').click()
    wait_until(lambda: row_of(key)["label"] == new_label, "the manifest to show the button's label")
    assert row_of(key)["decision"] == "relabeled"

    # another reviewer relabels a digit this page still shows as it was: this page's decision on it
    # is refused, the page says so and shows the digit as it is now
    third = inked[1]
    key3 = (third["sheet_hash"], third["row"], third["col"])
    other_label = (third["label"] + 2) % 10
    _manifest.record_decision(server["data"], *key3, label=other_label)
    tile = f'figure.tile[data-id="{"/".join(map(str, key3))}"]'
    d.find_element(By.CSS_SELECTOR, tile).click()
    ActionChains(d).send_keys("x").perform()
    wait_for(d, lambda drv: "changed meanwhile" in drv.find_element(By.ID, "status").text, "the page to say so")
    assert d.find_element(By.CSS_SELECTOR, tile).get_attribute("data-label") == str(other_label)
    assert (row_of(key3)["label"], row_of(key3)["decision"]) == (other_label, "relabeled")  # not rejected
