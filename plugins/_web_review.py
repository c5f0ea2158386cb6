"""Data behind the review page: the manifest of a data dir, each digit's image, and how suspicious
its label looks to the newest trained model.

A digit is identified by ``(sheet_hash, row, col)``, the key human decisions are stored under
(``plugins/_manifest.py``), so a decision made here is the same one ``mnistp4 label`` makes and
``segment`` re-applies after every re-run.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from mnistp4.errors import InputError, NotProvided

log = logging.getLogger(__name__)

#: sheet hashes are hex digests; anything else in a URL is rejected before touching the disk
SHEET_HASH_RE = re.compile(r"^[0-9a-fA-F]{6,128}$")
#: the normalization every exported model expects (contract of model.onnx)
MEAN, STD = 0.1307, 0.3081


def manifest_module():
    """``plugins._manifest`` (the decisions API shared with ``mnistp4 label``)."""
    try:
        from plugins import _manifest
    except ImportError as e:  # the sheets stage provides it; say so instead of a traceback
        raise NotProvided(f"the review page needs plugins/_manifest.py (manifest and decisions): {e}") from e
    return _manifest


@dataclass
class ModelScores:
    """Softmax probabilities of one model over the digits of one manifest version."""

    model_path: Path
    probs: dict[tuple[str, int, int], np.ndarray]


class ReviewData:
    """Thread-safe view of one data dir for the review page.

    The manifest is re-read when its file changes (``segment`` or ``mnistp4 label`` may run while
    the server is up); model scores are recomputed only when the manifest or the model changes.
    """

    def __init__(self, data_dir: Path, model_path: Path | None = None,
                 load_predictor: Callable[[Path], Callable] | None = None):
        self.data_dir = Path(data_dir)
        self.model_path = Path(model_path) if model_path else None
        self._load_predictor = load_predictor or onnx_predictor
        self._lock = threading.RLock()
        self._stamp: tuple | None = None
        self._rows: list[dict] = []
        self._index: dict[tuple[str, int, int], dict] = {}
        self._scores: ModelScores | None = None
        self._scores_stamp: tuple | None = None
        self._predict: Callable | None = None

    # -- manifest ----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.csv"

    def rows(self) -> list[dict]:
        with self._lock:
            self._refresh()
            return list(self._rows)

    def _refresh(self) -> None:
        try:
            st = self.manifest_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        rows = manifest_module().read_manifest(self.data_dir) if stamp else []
        self._rows = rows
        self._index = {(r["sheet_hash"], int(r["row"]), int(r["col"])): r for r in rows}
        self._stamp = stamp

    def find(self, sheet_hash: str, row: int, col: int) -> dict | None:
        """The manifest row of one digit, or None (unknown sheet or cell)."""
        if not SHEET_HASH_RE.match(sheet_hash):
            return None
        with self._lock:
            self._refresh()
            return self._index.get((sheet_hash, row, col))

    def image_path(self, row: dict) -> Path | None:
        """The digit's PNG, only if it lies inside the data dir (a hand-edited manifest can say anything)."""
        base = self.data_dir.resolve()
        path = (base / row["path"]).resolve()
        if base not in path.parents or not path.is_file():
            return None
        return path

    def decide(self, sheet_hash: str, row: int, col: int, *, label: int | None = None,
               reject: bool = False, accept: bool = False) -> dict:
        """Record a human decision through the shared decisions API; returns the digit's new item."""
        with self._lock:
            manifest_module().record_decision(self.data_dir, sheet_hash, row, col,
                                              label=label, reject=reject, accept=accept)
            self._stamp = None  # re-read: the manifest now carries the decision
            self._refresh()
            return self.item(self._index[(sheet_hash, row, col)], self.scores())

    # -- model scores --------------------------------------------------------------------------
    def scores(self) -> ModelScores | None:
        """Per-digit probabilities from the model, or None without a model (or if it fails)."""
        if self.model_path is None:
            return None
        with self._lock:
            self._refresh()
            try:
                mst = self.model_path.stat()
            except FileNotFoundError:
                log.warning("model %s is gone; sorting by flags only", self.model_path)
                return None
            stamp = (self._stamp, mst.st_mtime_ns)
            if stamp == self._scores_stamp:
                return self._scores
            if self._predict is None or self._scores_stamp is None or self._scores_stamp[1] != mst.st_mtime_ns:
                self._predict = self._load_predictor(self.model_path)
            keys, images = [], []
            for key, r in self._index.items():
                path = self.image_path(r)
                img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path else None
                if img is None or img.shape != (28, 28):
                    continue
                keys.append(key)
                images.append(img)
            probs: dict = {}
            if images:
                logits = np.asarray(self._predict(np.stack(images)), dtype=np.float64)
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                probs = dict(zip(keys, p))
            self._scores = ModelScores(self.model_path, probs)
            self._scores_stamp = stamp
            return self._scores

    # -- what the page gets --------------------------------------------------------------------
    def listing(self) -> dict:
        """Every digit with its flags, decision and (with a model) prediction and suspicion."""
        rows = self.rows()
        scores = self.scores()
        return {"data_dir": str(self.data_dir),
                "model": str(scores.model_path) if scores else None,
                "count": len(rows), "digits": [self.item(r, scores) for r in rows]}

    def item(self, r: dict, scores: ModelScores | None = None) -> dict:
        """One digit as the page shows it.

        ``suspicion`` is 1 - p(label) under the model: high when the model disagrees with the
        label or is unsure. Without a model it is the number of QA flags, so flagged digits
        still come first. Empty boxes hold nothing to judge and rank last (-1).
        """
        key = (r["sheet_hash"], int(r["row"]), int(r["col"]))
        flags = [f for f in (r.get("flags") or "").split(";") if f]
        label = r.get("label")
        item = {
            "id": f"{key[0]}/{key[1]}/{key[2]}",
            "sheet_hash": key[0], "row": key[1], "col": key[2],
            "label": label, "source": r.get("source", ""), "sheet": r.get("sheet", ""),
            "flags": flags, "decision": r.get("decision", ""),
            "usable": bool(manifest_module().usable(r)),
            "image": f"/api/digits/{key[0]}/{key[1]}/{key[2]}.png",
            "predicted": None, "confidence": None, "suspicion": float(len(flags)),
        }
        if "empty" in flags:
            item["suspicion"] = -1.0
            return item
        p = scores.probs.get(key) if scores else None
        if p is not None:
            item["predicted"] = int(p.argmax())
            item["confidence"] = round(float(p.max()), 4)
            item["suspicion"] = round(1.0 - float(p[label]) if label is not None else 1.0, 4)
        return item


def newest_model(runs_dir: Path) -> Path | None:
    """The ``model.onnx`` of the most recently written run in ``runs_dir``, if any."""
    if not Path(runs_dir).is_dir():
        return None
    models = [p for p in Path(runs_dir).glob("*/model.onnx") if p.is_file()]
    return max(models, key=lambda p: p.stat().st_mtime_ns) if models else None


def onnx_predictor(model_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, 28, 28) -> logits (N, 10) with onnxruntime, one image at a time because the
    exported models have a static batch of 1."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise InputError(f"{model_path}: cannot be loaded by onnxruntime ({e}); pass --run with a "
                         f"run dir that holds a valid model.onnx, or --no-model") from e
    name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) / 255.0 - MEAN) / STD
        out = [session.run(None, {name: x[i][None, None]})[0].reshape(-1) for i in range(len(x))]
        return np.stack(out)

    return predict
