"""The Flask application behind ``mnistp4 serve``: two pages and the JSON API they use.

Pages: ``/collect`` (draw a sheet on a tablet), ``/review`` (check and fix labels), ``/try`` (draw a
digit, see the board's answer, save corrections; :mod:`mnistp4.stages.web.try_page`).

API (every answer is JSON except the images; errors are ``{"error": message}``):

=======================================  =================================================
``GET  /api/layouts``                    layouts and the default one
``GET  /api/layouts/<name>``             boxes (template pixels), digit per box, pen width
``GET  /api/layouts/<name>/template.png`` the blank sheet the page draws on
``POST /api/sheets``                     multipart ``layout``, ``writer``, ``image`` (PNG)
``POST /api/photos``                     multipart ``writer``, ``image`` (a phone photo of a paper
                                         sheet: JPEG, PNG, HEIC, ...); answers how many corner
                                         markers it shows
``GET  /api/sheets``                     submitted sheets, newest first
``GET  /api/sheets/<id>``                one submitted sheet's sidecar
``GET  /api/digits``                     every digit of the data dir with flags/suspicion
``GET  /api/digits/<hash>/<row>/<col>.png`` one 28x28 digit
``POST /api/digits/<hash>/<row>/<col>``  ``{"label": 0-9}``, ``{"reject": true}`` or
                                         ``{"accept": true}`` (+ optional label); with
                                         ``"seen": {"label", "decision", "version"}`` 409
                                         if the digit changed since (another reviewer, a
                                         re-run of segment)
=======================================  =================================================

Unknown layouts, sheets and digits answer 404; malformed input 400; a non-PNG upload 415; an
upload over the size limit 413. Nothing a client sends is used as a path.

Every request passes :mod:`mnistp4.stages.web.security` first: an unknown ``Host`` answers 400, a
missing access token (when the server has one) 401, a POST from another origin or without the
page's ``X-CSRF-Token`` header 403 (scripts get the token from ``GET /api/session``), and JSON
nested deeper than 32 levels 400. Every answer carries a CSP without inline script.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, abort, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from mnistp4.errors import Mnistp4Error, UsageError
from mnistp4.stages.web.collect import SheetTemplate, UploadError, list_sidecars, read_sidecar, save_sheet
from mnistp4.stages.web.photos import save_photo
from mnistp4.stages.web.review import ChangedMeanwhile, ReviewData
from mnistp4.stages.web.security import Guard, install

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
#: a 1-2 Mpx grey or RGBA sheet from a canvas is well under this
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
#: a phone photo may be larger than a drawn sheet: a 48-50 MP JPEG is 10-30 MB
MAX_PHOTO_BYTES = 64 * 1024 * 1024
DECISION_KEYS = {"label", "reject", "accept", "seen"}


@dataclass
class WebSettings:
    """What the server works on; fixed when it starts (clients never choose paths)."""

    raw_dir: Path
    data_dir: Path
    default_layout: str
    layout_names: Callable[[], list[str]]
    get_template: Callable[[str], SheetTemplate]
    get_layout: Callable[[str], object] | None = None  # a layout by name, to count a photo's corner markers
    model_path: Path | None = None
    load_predictor: Callable | None = None
    try_model: Path | None = None  # the .espdl /try answers with; None: newest verified Int8 in runs_dir
    runs_dir: Path | None = None
    ctx: object | None = None  # the project's App, for `mnistp4 update` from the page
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_photo_bytes: int = MAX_PHOTO_BYTES
    guard: Guard = field(default_factory=Guard)


def read_upload(upload, limit: int) -> bytes:
    """An uploaded file's bytes; over ``limit`` (a client that sent no length or a wrong one) 413."""
    data = upload.read(limit + 1)
    if len(data) > limit:
        abort(413)
    return data


class TemplateCache:
    """Renders each layout's template once (rendering is the slow part of a layout request)."""

    def __init__(self, render: Callable[[str], SheetTemplate], names: Callable[[], list[str]]):
        self._render, self._names = render, names
        self._cache: dict[str, SheetTemplate] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> SheetTemplate | None:
        if name not in self._names():
            return None
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._render(name)
            return self._cache[name]


def create_web_app(settings: WebSettings) -> Flask:
    app = Flask(
        "mnistp4-web",
        template_folder=str(WEB_DIR / "templates"),
        static_folder=str(WEB_DIR / "static"),
        static_url_path="/static",
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False
    templates = TemplateCache(settings.get_template, settings.layout_names)
    review = ReviewData(settings.data_dir, settings.model_path, settings.load_predictor)
    app.extensions["mnistp4"] = {"settings": settings, "review": review, "templates": templates}
    install(app, settings.guard)

    def error(status: int, message: str):
        return jsonify({"error": message}), status

    def template_or_404(name: str) -> SheetTemplate:
        t = templates.get(name)
        if t is None:
            abort(404, description=f"unknown layout {name!r}; known: {', '.join(settings.layout_names())}")
        return t

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if request.path.startswith("/api/"):
            message = e.description or e.name
            if e.code == 413:
                limit = settings.max_photo_bytes if request.path == "/api/photos" else settings.max_upload_bytes
                message = f"upload too large: the limit is {limit // 1024} KiB"
            return error(e.code or 500, message)
        return e

    @app.errorhandler(Mnistp4Error)
    def mnistp4_error(e: Mnistp4Error):
        # UploadError carries its own status; a broken manifest or model is the server's problem
        status = getattr(e, "status", None) or (400 if isinstance(e, UsageError) else 500)
        return error(status, str(e))

    # -- pages ----------------------------------------------------------------------------------
    @app.get("/")
    def index():
        return render_template("index.html", raw_dir=settings.raw_dir, data_dir=settings.data_dir)

    @app.get("/collect")
    def collect_page():
        return render_template("collect.html", default_layout=settings.default_layout)

    @app.get("/review")
    def review_page():
        return render_template("review.html", data_dir=settings.data_dir)

    # -- layouts ----------------------------------------------------------------------------------
    @app.get("/api/layouts")
    def layouts():
        return jsonify({"default": settings.default_layout, "layouts": settings.layout_names()})

    @app.get("/api/layouts/<name>")
    def layout(name: str):
        return jsonify(template_or_404(name).as_json())

    @app.get("/api/layouts/<name>/template.png")
    def layout_png(name: str):
        t = template_or_404(name)
        resp = app.response_class(t.png, mimetype="image/png")
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    # -- sheets -----------------------------------------------------------------------------------
    @app.post("/api/sheets")
    def submit_sheet():
        layout_name = request.form.get("layout", "")
        writer = request.form.get("writer", "").strip()
        upload = request.files.get("image")
        if not layout_name:
            return error(400, "missing form field 'layout'")
        if upload is None:
            return error(400, "missing file field 'image' (the drawn sheet as PNG)")
        t = template_or_404(layout_name)
        if upload.mimetype and upload.mimetype not in ("image/png", "application/octet-stream"):
            return error(415, f"the sheet must be image/png, got {upload.mimetype}")
        data = read_upload(upload, settings.max_upload_bytes)
        try:
            saved = save_sheet(settings.raw_dir, t, writer, data)
        except UploadError as e:
            return error(e.status, str(e))
        return jsonify(saved), 201

    @app.post("/api/photos")
    def submit_photo():
        request.max_content_length = settings.max_photo_bytes  # before the form is read
        writer = request.form.get("writer", "").strip()
        upload = request.files.get("image")
        if upload is None:
            return error(400, "missing file field 'image' (the photo of the sheet)")
        data = read_upload(upload, settings.max_photo_bytes)
        layouts = {n: settings.get_layout(n) for n in settings.layout_names()} if settings.get_layout else {}
        return jsonify(save_photo(settings.raw_dir, writer, data, upload.filename or "", layouts)), 201

    @app.get("/api/sheets")
    def sheets():
        return jsonify({"raw_dir": str(settings.raw_dir), "sheets": list_sidecars(settings.raw_dir)})

    @app.get("/api/sheets/<sheet_id>")
    def sheet(sheet_id: str):
        meta = read_sidecar(settings.raw_dir, sheet_id)
        if meta is None:
            return error(404, f"unknown sheet {sheet_id!r}")
        return jsonify(meta)

    # -- digits -----------------------------------------------------------------------------------
    @app.get("/api/digits")
    def digits():
        return jsonify(review.listing())

    @app.get("/api/digits/<sheet_hash>/<int:row>/<int:col>.png")
    def digit_png(sheet_hash: str, row: int, col: int):
        r = review.find(sheet_hash, row, col)
        path = review.image_path(r) if r else None
        if path is None:
            return error(404, f"unknown digit {sheet_hash}/{row}/{col}")
        return send_file(path, mimetype="image/png", max_age=0)

    @app.post("/api/digits/<sheet_hash>/<int:row>/<int:col>")
    def decide(sheet_hash: str, row: int, col: int):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error(400, 'send a JSON object: {"label": 0-9}, {"reject": true} or {"accept": true}')
        unknown = set(body) - DECISION_KEYS
        if unknown:
            return error(400, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(DECISION_KEYS)}")
        label = body.get("label")
        if label is not None and (type(label) is not int or not 0 <= label <= 9):
            return error(400, f"label must be an integer 0-9, got {label!r}")
        reject, accept = body.get("reject", False), body.get("accept", False)
        if type(reject) is not bool or type(accept) is not bool:
            return error(400, "reject and accept must be true or false")
        if reject and (accept or label is not None):
            return error(400, "reject stands alone: do not combine it with a label or accept")
        if label is None and not reject and not accept:
            return error(400, "nothing to record: give a label, reject or accept")
        seen = body.get("seen")
        if seen is not None and (not isinstance(seen, dict) or set(seen) - {"label", "decision", "version"}):
            return error(
                400, 'seen must be {"label": ..., "decision": ..., "version": ...}: the digit as the page showed it'
            )
        if review.find(sheet_hash, row, col) is None:
            return error(404, f"unknown digit {sheet_hash}/{row}/{col}")
        try:
            item = review.decide(sheet_hash, row, col, label=label, reject=reject, accept=accept, seen=seen)
        except ChangedMeanwhile as e:  # another reviewer (or `mnistp4 label`) decided first
            now = e.digit
            shown = f"label {now['label']}" + (f", {now['decision']}" if now["decision"] else "")
            return jsonify(
                {"error": f"changed meanwhile (now {shown}); your decision was not recorded", "digit": now}
            ), 409
        return jsonify({"digit": item})

    from mnistp4.stages.web.try_page import register_try

    register_try(app, settings, review)  # /try and /api/try, /api/update (module doc there)
    return app
