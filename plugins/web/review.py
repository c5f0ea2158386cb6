"""Data behind the review page: the manifest of a data dir, each digit's image, and how suspicious
its label looks to the newest trained model.

A digit is identified by ``(sheet_hash, row, col)``, the key human decisions are stored under
(``plugins/data/manifest.py``), so a decision made here is the same one ``mnistp4 label`` makes and
``segment`` re-applies after every re-run.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# the normalization every exported model expects (contract of model.onnx), defined once
from mnistp4.digitsets import MNIST_MEAN as MEAN
from mnistp4.digitsets import MNIST_STD as STD
from mnistp4.errors import InputError, NotProvided

log = logging.getLogger(__name__)

#: sheet hashes are hex digests; anything else in a URL is rejected before touching the disk
SHEET_HASH_RE = re.compile(r"^[0-9a-fA-F]{6,128}$")


def manifest_module():
    """``mnistp4.stages.data.manifest`` (the decisions API shared with ``mnistp4 label``)."""
    try:
        from mnistp4.stages.data import manifest as _manifest
    except ImportError as e:  # the sheets stage provides it; say so instead of a traceback
        raise NotProvided(f"the review page needs plugins/data/manifest.py (manifest and decisions): {e}") from e
    return _manifest


@dataclass
class ModelScores:
    """Softmax probabilities of one model for the digits of the current manifest."""

    model_path: Path
    probs: dict[tuple[str, int, int], np.ndarray]


class ChangedMeanwhile(Exception):
    """A decision made on a page that showed the digit as it was before another writer changed it."""

    def __init__(self, digit: dict):
        super().__init__("changed meanwhile")
        self.digit = digit


def _shown(r: dict) -> tuple:
    """What a reviewer's decision was based on: the digit's label and decision."""
    return (r.get("label"), r.get("decision") or "")  # a manifest row's label is an int or None, as in JSON


def _changed(now: dict, seen: dict) -> bool:
    """Whether the digit (as :meth:`ReviewData.item` gives it) differs from what a page showed: its
    label or decision, or (where the page sent it) its ``version``: a re-run of ``segment`` that cut
    another image or gave other flags."""
    return _shown(now) != _shown(seen) or ("version" in seen and seen["version"] != now["version"])


class ReviewData:
    """Thread-safe view of one data dir for the review page.

    The manifest is re-read when its file changes (``segment`` or ``mnistp4 label`` may run while
    the server is up); model scores are recomputed only when the manifest or the model changes.
    """

    def __init__(
        self, data_dir: Path, model_path: Path | None = None, load_predictor: Callable[[Path], Callable] | None = None
    ):
        self.data_dir = Path(data_dir)
        self.model_path = Path(model_path) if model_path else None
        self._load_predictor = load_predictor or onnx_predictor
        self._lock = threading.RLock()
        self._stamp: tuple | None = None
        self._rows: list[dict] = []
        self._index: dict[tuple[str, int, int], dict] = {}
        self._predict: Callable | None = None
        self._model_mtime: int | None = None
        self._probs: dict[tuple, np.ndarray] = {}
        self.model_error: str | None = None

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

    def decide(
        self,
        sheet_hash: str,
        row: int,
        col: int,
        *,
        label: int | None = None,
        reject: bool = False,
        accept: bool = False,
        seen: dict | None = None,
    ) -> dict:
        """Record a human decision through the shared decisions API; returns the digit's new item.

        ``seen`` (``{"label": …, "decision": …, "version": …}``, what the reviewer's page showed;
        ``version`` optional): when the digit has changed since (another reviewer, `mnistp4 label`,
        a re-run of `segment`), nothing is recorded and
        :class:`ChangedMeanwhile` carries the digit as it is now. Checked and recorded under the
        data dir's lock, so no other writer comes in between."""
        mf = manifest_module()
        with self._lock, mf.data_dir_lock(self.data_dir):
            self._stamp = None
            self._refresh()
            now = self._index.get((sheet_hash, row, col))
            if now is not None and seen is not None:
                if _changed(self.item(now), seen):
                    raise ChangedMeanwhile(self.item(now, self.scores()))
            mf.record_decision(self.data_dir, sheet_hash, row, col, label=label, reject=reject, accept=accept)
            self._stamp = None  # re-read: the manifest now carries the decision
            self._refresh()
            return self.item(self._index[(sheet_hash, row, col)], self.scores())

    # -- model scores --------------------------------------------------------------------------
    def scores(self) -> ModelScores | None:
        """Per-digit probabilities from the model, or None without a model (or when it cannot be
        loaded: ``model_error`` says why and the page ranks by flags).

        Probabilities are cached per image file, so a decision (which rewrites only the manifest)
        costs no inference; new or changed images and a changed model are scored again.
        """
        if self.model_path is None:
            return None
        with self._lock:
            self._refresh()
            try:
                mtime = self.model_path.stat().st_mtime_ns
            except FileNotFoundError:
                self.model_error = f"model {self.model_path} is gone; ranking by flags only"
                return None
            if mtime != self._model_mtime:
                self._predict, self._probs, self.model_error = None, {}, None
                self._model_mtime = mtime
            if self.model_error:
                return None
            if self._predict is None:
                try:
                    self._predict = self._load_predictor(self.model_path)
                except Exception as e:  # a broken model must not take the review page down
                    self.model_error = f"cannot use model {self.model_path}: {e}"
                    log.warning("%s", self.model_error)
                    return None
            current: dict[tuple[str, int, int], tuple] = {}
            todo: list[tuple[tuple, np.ndarray]] = []
            for key, r in self._index.items():
                path = self.image_path(r)
                if path is None:
                    continue
                cache_key = (str(path), path.stat().st_mtime_ns)
                current[key] = cache_key
                if cache_key not in self._probs:
                    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                    if img is not None and img.shape == (28, 28):
                        todo.append((cache_key, img))
            if todo:
                logits = np.asarray(self._predict(np.stack([img for _, img in todo])), dtype=np.float64)
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                self._probs.update(zip([k for k, _ in todo], p))
            self._probs = {ck: self._probs[ck] for ck in current.values() if ck in self._probs}
            return ModelScores(
                self.model_path, {key: self._probs[ck] for key, ck in current.items() if ck in self._probs}
            )

    # -- what the page gets --------------------------------------------------------------------
    def listing(self) -> dict:
        """Every digit with its flags, decision and (with a model) prediction and suspicion."""
        rows = self.rows()
        scores = self.scores()
        return {
            "data_dir": str(self.data_dir),
            "model": str(scores.model_path) if scores else None,
            "model_error": self.model_error,
            "count": len(rows),
            "digits": [self.item(r, scores) for r in rows],
        }

    def version(self, r: dict) -> str:
        """A short stamp of what the page shows of a digit besides its label and decision: its
        flags and its image file (changed when ``segment`` cuts the sheet again). It also makes the
        image's URL new when the image is, so a browser never shows a cached old one."""
        path = self.image_path(r)
        st = path.stat() if path is not None else None
        stamp = f"{r.get('flags') or ''}|{st.st_mtime_ns if st else 0}|{st.st_size if st else 0}"
        return hashlib.blake2s(stamp.encode(), digest_size=6).hexdigest()

    def item(self, r: dict, scores: ModelScores | None = None) -> dict:
        """One digit as the page shows it.

        ``suspicion`` is the number of QA flags plus, with a model, 1 - p(label): flagged digits
        (which need a decision anyway) come first, then the ones the model reads as another digit
        or is unsure about. Empty boxes hold nothing to judge and rank last (-1).
        """
        key = (r["sheet_hash"], int(r["row"]), int(r["col"]))
        flags = [f for f in (r.get("flags") or "").split(";") if f]
        label = r.get("label")
        version = self.version(r)
        item = {
            "id": f"{key[0]}/{key[1]}/{key[2]}",
            "sheet_hash": key[0],
            "row": key[1],
            "col": key[2],
            "label": label,
            "source": r.get("source", ""),
            "sheet": r.get("sheet", ""),
            "flags": flags,
            "decision": r.get("decision", ""),
            "usable": bool(manifest_module().usable(r)),
            "image": f"/api/digits/{key[0]}/{key[1]}/{key[2]}.png?v={version}",
            "version": version,
            "predicted": None,
            "confidence": None,
            "suspicion": float(len(flags)),
        }
        if "empty" in flags:
            item["suspicion"] = -1.0
            return item
        p = scores.probs.get(key) if scores else None
        if p is not None:
            item["predicted"] = int(p.argmax())
            item["confidence"] = round(float(p.max()), 4)
            doubt = 1.0 - float(p[label]) if label is not None else 1.0
            item["suspicion"] = round(len(flags) + doubt, 4)
        return item


def newest_model(runs_dir: Path) -> Path | None:
    """The model of the most recently written run in ``runs_dir``: its ``model.onnx``, else its
    ``model.pt`` (both are scored through the registered model formats)."""
    if not Path(runs_dir).is_dir():
        return None
    newest: tuple[int, Path] | None = None
    for run in Path(runs_dir).iterdir():
        files = [run / name for name in ("model.onnx", "model.pt") if (run / name).is_file()]
        if files:
            stamp = max(f.stat().st_mtime_ns for f in files)
            if newest is None or stamp > newest[0]:
                newest = (stamp, files[0])
    return newest[1] if newest else None


def onnx_predictor(model_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, 28, 28) -> logits (N, 10) with onnxruntime, one image at a time because the
    exported models have a static batch of 1."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise InputError(
            f"{model_path}: cannot be loaded by onnxruntime ({e}); pass --run with a "
            f"run dir that holds a valid model.onnx, or --no-model"
        ) from e
    name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) / 255.0 - MEAN) / STD
        out = [session.run(None, {name: x[i][None, None]})[0].reshape(-1) for i in range(len(x))]
        return np.stack(out)

    return predict
