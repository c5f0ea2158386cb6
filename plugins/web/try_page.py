"""``/try``: draw a digit in the browser and see what the board would show, answered by the exact
Int8 ``.espdl`` that ``deploy`` would flash; save what it got wrong; update the model.

The answer follows the firmware's path step by step: the project normalizer (which the C core is a
port of) on the 448x448 canvas, the model input by esp-ppq's rounding, the integer interpreter on
the file, then :class:`BoardRule`, a float32 port of ``dc_softmax``, ``dc_raw_bars``, ``dc_decide``
and ``dc_screen_text`` (firmware/main/core/digit_core.c) with the firmware's default thresholds.
The tests compare every field with the C core's host program on the same canvases.

API (besides the pages' own, see :mod:`mnistp4.stages.web.app`):

=======================================  =================================================
``POST /api/try``                        the canvas as ``image/png`` -> the board's answer
``POST /api/try/digits``                 multipart ``image`` (PNG), ``label``, ``writer``:
                                         save it as a labelled custom digit (source ``try:<writer>``)
``GET  /api/try/model``                  the file answering now
``POST /api/update``                     start ``mnistp4 update`` on that file's run
``GET  /api/update``                     its progress and result
=======================================  =================================================
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, render_template, request

from mnistp4.errors import InputError, UsageError

log = logging.getLogger(__name__)

#: the board's drawing canvas and brush (firmware/main/ui.h UI_CANVAS_SIDE, UI_BRUSH_RADIUS)
CANVAS_SIDE = 448
BRUSH_RADIUS = 14
#: what a saved digit's writer name may hold (it becomes part of the manifest's source)
WRITER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
TRY_DIR = "try"
STATES = {0: "empty", 1: "digit", 2: "unsure", 3: "scribble"}
F32 = np.float32


class BoardRule:
    """The firmware's score post-processing and decision in float32, operation for operation."""

    min_ink_pixels = 8
    max_fill_permille = 700
    min_confidence = F32(0.60)
    min_margin = F32(0.20)

    @staticmethod
    def expf(x: np.float32) -> np.float32:
        """dc_expf: exp from float adds and multiplies only (C's float evaluation, no fused ops)."""
        x = F32(x)
        if x < F32(-87.0):
            return F32(0.0)
        x = min(x, F32(88.0))
        t = x * F32(1.44269504)
        k = int(t - F32(0.5)) if t < 0 else int(t + F32(0.5))  # C's cast truncates
        kf = F32(k)
        r = (x - kf * F32(0.693145752)) - kf * F32(1.42860677e-6)
        p = F32(1.0) / F32(5040.0)
        for c in (
            F32(1.0) / F32(720.0),
            F32(1.0) / F32(120.0),
            F32(1.0) / F32(24.0),
            F32(1.0) / F32(6.0),
            F32(0.5),
            F32(1.0),
            F32(1.0),
        ):
            p = c + r * p
        scale = np.array([(k + 127) << 23], np.uint32).view(np.float32)[0]
        return F32(p * scale)

    @staticmethod
    def argmax(values) -> int:
        best = 0
        for i in range(1, len(values)):
            if values[i] > values[best]:
                best = i
        return best

    @classmethod
    def softmax(cls, logits) -> list[np.float32]:
        m = logits[cls.argmax(logits)]
        e = [cls.expf(F32(v - m)) for v in logits]
        total = F32(0.0)
        for v in e:
            total = F32(total + v)
        return [F32(v / total) for v in e]

    @classmethod
    def raw_bars(cls, logits) -> list[np.float32]:
        m = logits[cls.argmax(logits)]
        out = []
        for v in logits:
            b = F32(v / m) if m > F32(0.0) else F32(0.0)
            out.append(F32(min(max(b, F32(0.0)), F32(1.0))))
        return out

    @staticmethod
    def ink_stats(image: np.ndarray) -> tuple[int, int]:
        """(lit pixels, permille of the ink box at >= 128) of a 28x28 image."""
        lit = np.argwhere(image > 0)
        if not len(lit):
            return 0, 0
        (r0, c0), (r1, c1) = lit.min(axis=0), lit.max(axis=0)
        box = image[r0 : r1 + 1, c0 : c1 + 1]
        return len(lit), int(np.count_nonzero(box >= 128)) * 1000 // box.size

    @classmethod
    def decide(cls, image: np.ndarray, probs) -> dict:
        ink, fill = cls.ink_stats(image)
        d = {
            "state": 0,
            "digit": -1,
            "confidence": F32(0.0),
            "margin": F32(0.0),
            "ink_pixels": ink,
            "fill_permille": fill,
        }
        if ink < cls.min_ink_pixels:
            return d
        if probs is not None:
            d["digit"] = cls.argmax(probs)
            d["confidence"] = probs[d["digit"]]
            second = F32(0.0)
            for i, p in enumerate(probs):
                if i != d["digit"] and p > second:
                    second = p
            d["margin"] = F32(d["confidence"] - second)
        if fill > cls.max_fill_permille:
            d["state"] = 3
        elif probs is None or d["confidence"] < cls.min_confidence or d["margin"] < cls.min_margin:
            d["state"] = 2
        else:
            d["state"] = 1
        return d

    @staticmethod
    def screen_text(d: dict) -> tuple[str, str]:
        """(big answer, status line) as dc_screen_text prints them with a model loaded."""

        def percent(share):
            return int(F32(F32(share) * F32(100.0)) + F32(0.5))

        if d["state"] == 1:
            return str(d["digit"]), f"confidence {percent(d['confidence'])} %"
        if d["state"] == 2:
            return "?", f"unsure (best {d['digit']} at {percent(d['confidence'])} %)"
        if d["state"] == 3:
            return "?", "no digit: that does not look like one"
        return "", "draw a digit"


def single_thread_blas() -> bool:
    """Limit numpy's OpenBLAS to one thread in this process (the server). The normalizer's small
    matrix products gain nothing from threads, and on a busy machine OpenBLAS's threads wait for
    each other, which made one canvas's normalization many times slower. Best effort (returns False
    where the library or its setter is not found)."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line and ".so" in line})
    except OSError:
        return False
    done = False
    for lib in libs:
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            setter = getattr(handle, name, None)
            if setter is not None:
                setter(ctypes.c_int(1))
                done = True
                break
    return done


class TryModel:
    """The ``.espdl`` answering ``/try``: a fixed file, or the newest verified Int8 file of the runs
    dir (looked up again when asked to, e.g. after an update)."""

    def __init__(self, fixed: Path | None = None, runs_dir: Path | None = None):
        self.fixed, self.runs_dir = (Path(fixed) if fixed else None), (Path(runs_dir) if runs_dir else None)
        self._lock = threading.Lock()
        self._loaded: tuple | None = None  # (path, mtime, model, interpreter)
        self.path = self.fixed or self._newest()

    def _newest(self) -> Path | None:
        from mnistp4.stages.training.update import newest_verified_model

        return newest_verified_model(self.runs_dir) if self.runs_dir else None

    def switch(self, path: Path | None = None) -> Path | None:
        with self._lock:
            self.path = Path(path) if path else (self.fixed or self._newest())
            return self.path

    def get(self):
        """``(path, model, interpreter)``; the file is read again when it changed on disk."""
        from mnistp4.stages.quantize.espdl_reader import read_espdl
        from mnistp4.stages.quantize.interpreter import Interpreter

        with self._lock:
            if self.path is None:
                raise InputError(
                    "no verified Int8 model to try: run `mnistp4 run` (or quantize a run), "
                    "or start `mnistp4 serve --model FILE.espdl`"
                )
            mtime = self.path.stat().st_mtime_ns
            if self._loaded is None or self._loaded[:2] != (self.path, mtime):
                model = read_espdl(self.path)
                self._loaded = (self.path, mtime, model, Interpreter(model))
            return self._loaded[0], self._loaded[2], self._loaded[3]


def decode_canvas(data: bytes) -> np.ndarray:
    """PNG bytes -> the grey canvas (448x448). The page draws grey levels only (R = G = B), so the
    grey value is read as it is; a colour image goes through the normalizer's own grey rule."""
    import cv2

    from mnistp4.stages.data.normalizer import to_grey_uint8

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise UsageError("the canvas is not a readable PNG")
    if img.ndim == 3:
        rgb = img[..., 2::-1] if img.shape[2] >= 3 else img[..., :1]
        img = (
            rgb[..., 0]
            if all(np.array_equal(rgb[..., 0], rgb[..., i]) for i in range(rgb.shape[2]))
            else to_grey_uint8(np.ascontiguousarray(rgb))
        )
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    if img.shape != (CANVAS_SIDE, CANVAS_SIDE):
        raise UsageError(
            f"the canvas must be {CANVAS_SIDE}x{CANVAS_SIDE} (the board's), got {img.shape[1]}x{img.shape[0]}"
        )
    return np.ascontiguousarray(img)


def board_answer(grey: np.ndarray, model, interpreter) -> dict:
    """What the board shows for a grey canvas: normalize, run the Int8 model when there is ink,
    post-process and decide as the firmware does."""
    from mnistp4.stages.data.normalizer import normalize_digit
    from mnistp4.stages.quantize.interpreter import normalize_pixels, quantize_input

    image = normalize_digit(grey)
    ran = bool(image.any())  # the C normalizer returns DC_OK_INK exactly then
    q = quantize_input(normalize_pixels(image[None], model), model.input_exponent, model.input_dtype, interpreter.mode)
    ints = probs = raw = logits = None
    if ran:
        ints = interpreter.run(q)[model.outputs[0].name].reshape(-1)
        scale = F32(2.0 ** model.outputs[0].exponent)
        logits = [F32(F32(int(v)) * scale) for v in ints]
        probs, raw = BoardRule.softmax(logits), BoardRule.raw_bars(logits)
    d = BoardRule.decide(image, probs)
    answer, status = BoardRule.screen_text(d)
    state = STATES[d["state"]]
    return {
        "digit": d["digit"] if state == "digit" else None,
        "state": {"scribble": "unsure"}.get(state, state),
        "board_state": state,
        "scores": [float(p) for p in probs] if probs else [0.0] * 10,
        "raw": [float(v) for v in raw] if raw else [0.0] * 10,
        "bars_shown": ran and state != "scribble",
        "best": d["digit"],
        "confidence": float(d["confidence"]),
        "margin": float(d["margin"]),
        "ink_pixels": d["ink_pixels"],
        "fill_permille": d["fill_permille"],
        "answer": answer,
        "status": status,
        "ran": ran,
        "outputs": [int(v) for v in ints] if ints is not None else None,
        "logits": [float(v) for v in logits] if logits else None,
        "model_input": q.reshape(28, 28).astype(int).tolist(),
        "input28": image.astype(int).tolist(),
    }


def save_try_digit(data_dir: Path, png: bytes, image28: np.ndarray, label: int, writer: str) -> dict:
    """Save a drawn canvas and its 28x28 as a labelled custom digit of the data dir.

    Under the data dir's lock (:func:`~mnistp4.stages.data.manifest.data_dir_lock`) the manifest is
    re-read, the row added (or replaced: the same drawing saved again keeps one row) and written by
    ``write_manifest``, which applies the recorded decisions. The row is also entered in segment's
    state under its own source folder, so re-running ``segment`` keeps it like another raw folder's
    sheets. Returns the manifest row."""
    import cv2

    from mnistp4.io import write_bytes, write_json
    from mnistp4.stages.data import manifest as mf

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    sheet_hash = hashlib.sha256(png).hexdigest()[:16]
    rel_canvas, rel_digit = f"{TRY_DIR}/{sheet_hash}.png", f"{TRY_DIR}/{sheet_hash}_28.png"
    ok, enc = cv2.imencode(".png", image28)
    if not ok:
        raise InputError("cannot encode the 28x28 digit as PNG")
    row = {
        "path": rel_digit,
        "label": int(label),
        "source": f"try:{writer}",
        "sheet": rel_canvas,
        "sheet_hash": sheet_hash,
        "row": 0,
        "col": 0,
        "flags": "",
        "decision": "",
    }
    with mf.data_dir_lock(data_dir):
        write_bytes(data_dir / rel_canvas, png)
        write_bytes(data_dir / rel_digit, enc.tobytes())
        rows = mf.read_manifest(data_dir) if (data_dir / mf.MANIFEST).is_file() else []
        rows = [r for r in rows if (r["sheet_hash"], r["row"], r["col"]) != (sheet_hash, 0, 0)] + [row]
        mf.write_manifest(data_dir, rows)
        _keep_in_segment_state(data_dir, sheet_hash, row, write_json)
    return next(r for r in mf.read_manifest(data_dir) if r["sheet_hash"] == sheet_hash)


def _keep_in_segment_state(data_dir: Path, sheet_hash: str, row: dict, write_json) -> None:
    """Enter the digit in ``segment_state.json`` as a sheet of the pseudo raw folder ``try:``, so
    segment's merge (which keeps other raw folders' sheets) rewrites the manifest with it."""
    import json

    try:
        from mnistp4.stages.sheets.batch import STATE, VERSION
    except ImportError:  # no sheets stage: nothing rewrites the manifest behind us
        return
    path = data_dir / STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        state = {}
    if not isinstance(state, dict) or state.get("version") != VERSION or not isinstance(state.get("sheets"), dict):
        state = {"version": VERSION, "sheets": {}}
    state["sheets"][sheet_hash] = {
        "sheet": row["sheet"],
        "options_key": "try",
        "digits": 1,
        "flagged": 0,
        "rows": [row],
        "raw_dir": "try:",
    }
    write_json(path, state)


class UpdateJob:
    """One ``mnistp4 update`` at a time, in a background thread, with its progress for the page."""

    def __init__(self, ctx, data_dir: Path, model: TryModel):
        self.ctx, self.data_dir, self.model = ctx, Path(data_dir), model
        self._lock = threading.Lock()
        self.state = {
            "running": False,
            "stage": None,
            "fraction": 0.0,
            "messages": [],
            "result": None,
            "error": None,
            "switched_to": None,
        }
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict:
        with self._lock:
            return {**self.state, "messages": list(self.state["messages"])}

    def start(self, run_fn=None) -> bool:
        with self._lock:
            if self.state["running"]:
                return False
            path = self.model.path
            if path is None:
                raise InputError("no model to update: /try has no verified Int8 file")
            self.state = {
                "running": True,
                "stage": "start",
                "fraction": 0.0,
                "messages": [f"updating {path.parent}"],
                "result": None,
                "error": None,
                "switched_to": None,
                "started": time.time(),
            }
        self._thread = threading.Thread(
            target=self._run, args=(path.parent, run_fn), daemon=True, name="mnistp4-update"
        )
        self._thread.start()
        return True

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        with self._lock:
            self.state.update(stage=stage, fraction=fraction)
            self.state["messages"].append(message)

    def _run(self, run_dir: Path, run_fn) -> None:
        from mnistp4.stages.training.update import update_run

        try:
            report = (run_fn or update_run)(
                self.ctx, run_dir, data_dir=self.data_dir, on_progress=self._progress, quiet=True
            )
            switched = None
            if report.get("deployable"):
                switched = str(self.model.switch(Path(report["after_model"])))
            with self._lock:
                self.state.update(result=report, switched_to=switched)
        except Exception as e:  # the page shows it; the server keeps running
            log.exception("update failed")
            with self._lock:
                self.state["error"] = str(e) or type(e).__name__
        finally:
            with self._lock:
                self.state["running"] = False

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def register_try(app: Flask, settings, review) -> None:
    """Add ``/try`` and its API to the web app (requests pass the app's security checks first)."""
    model = TryModel(settings.try_model, settings.runs_dir)
    job = UpdateJob(settings.ctx, settings.data_dir, model)
    app.extensions["mnistp4"].update(try_model=model, update_job=job)

    def error(status: int, message: str):
        return jsonify({"error": message}), status

    def read_png() -> bytes | None:
        if request.mimetype == "image/png":
            return request.get_data(cache=False)
        upload = request.files.get("image")
        return upload.read() if upload is not None else None

    @app.get("/try")
    def try_page():
        return render_template(
            "try.html", data_dir=settings.data_dir, canvas_side=CANVAS_SIDE, brush_radius=BRUSH_RADIUS
        )

    @app.get("/api/try/model")
    def try_model():
        return jsonify(
            {"model": str(model.path) if model.path else None, "canvas": CANVAS_SIDE, "brush_radius": BRUSH_RADIUS}
        )

    @app.post("/api/try")
    def try_answer():
        if request.mimetype != "image/png":
            return error(415, f"send the canvas as image/png, got {request.mimetype or 'nothing'}")
        t0 = time.perf_counter()
        grey = decode_canvas(request.get_data(cache=False))
        path, espdl, interpreter = model.get()
        out = board_answer(grey, espdl, interpreter)
        return jsonify({**out, "model": str(path), "ms": round(1000 * (time.perf_counter() - t0), 2)})

    @app.post("/api/try/digits")
    def try_save():
        png = read_png()
        label, writer = request.form.get("label", ""), request.form.get("writer", "").strip() or "browser"
        if png is None:
            return error(400, "missing file field 'image' (the canvas as PNG)")
        if not (label.isdigit() and len(label) == 1):
            return error(400, f"label must be a digit 0-9, got {label!r}")
        if not WRITER_RE.match(writer):
            return error(400, "writer: 1-40 letters, digits, '.', '_' or '-'")
        from mnistp4.stages.data.normalizer import normalize_digit

        image = normalize_digit(decode_canvas(png))
        if int(np.count_nonzero(image)) < BoardRule.min_ink_pixels:
            return error(400, "the canvas is empty: draw the digit first")
        row = save_try_digit(settings.data_dir, png, image, int(label), writer)
        return jsonify(
            {
                "digit": {k: row[k] for k in ("path", "label", "source", "sheet_hash", "row", "col")},
                "review": f"/review#{row['sheet_hash']}/0/0",
            }
        ), 201

    @app.post("/api/update")
    def update_start():
        if settings.ctx is None:
            return error(503, "updating needs the project's configuration (start the server with `mnistp4 serve`)")
        if not job.start():
            return error(409, "an update is already running")
        return jsonify(job.snapshot()), 202

    @app.get("/api/update")
    def update_status():
        return jsonify(job.snapshot())
