"""Typed records passed between stages and named by the hook contracts (see :mod:`mnistp4.api`).

Plain dataclasses: validation, and for :class:`Recipe` the few constructors a training loop needs.
They live in the core so that a plugin replacing a stage depends on the public API only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Digit:
    """One digit cut from a sheet, before it is written to a data dir.

    ``image`` is the normalized 28x28 uint8 (white ink on black). ``flags`` are QA flags such as
    ``"empty"``, ``"multi"``, ``"border"``, ``"small"``, ``"large"``, ``"low_contrast"``;
    a flagged digit is kept but excluded from training by default.
    """

    image: np.ndarray
    label: int | None
    row: int
    col: int
    flags: list[str] = field(default_factory=list)
    crop: np.ndarray | None = None  # the raw cell/crop, for review pictures

    def __post_init__(self):
        if self.image.shape != (28, 28) or self.image.dtype != np.uint8:
            raise ValueError(f"Digit.image must be uint8 (28, 28), got {self.image.dtype} {self.image.shape}")
        if self.label is not None and not 0 <= int(self.label) <= 9:
            raise ValueError(f"Digit.label must be 0..9 or None, got {self.label}")


@dataclass
class DigitSet:
    """A set of labelled 28x28 digits: ``images`` uint8 (N, 28, 28), ``labels`` int64 (N,),
    ``sources`` the writer/sheet of each digit (used to split by writer)."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str] | None = None
    name: str = ""

    def __post_init__(self):
        if self.images.ndim != 3 or self.images.shape[1:] != (28, 28):
            raise ValueError(f"DigitSet.images must be (N, 28, 28), got {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.sources is not None and len(self.sources) != len(self.labels):
            raise ValueError(f"{len(self.sources)} sources but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ModelSpec:
    """A model architecture: ``build()`` returns a fresh ``torch.nn.Module`` (N,1,28,28)->(N,10).

    ``recipe`` / ``augment``: what this architecture trains best with. Training uses them only where
    the configuration leaves ``recipe`` / ``augment`` at their shipped defaults; a value from a
    config file, the environment or the command line always wins.
    """

    name: str
    build: Callable[[], Any]
    description: str = ""
    recipe: str = ""
    augment: tuple[str, ...] | None = None


@dataclass
class PipelineStep:
    """One step of ``mnistp4 run``: ``run(app, state) -> dict`` merged into ``state``."""

    order: int
    run: Callable[[Any, dict], dict]
    description: str = ""


@dataclass
class DeployResult:
    """What a deploy target did (or, on a dry run, would do)."""

    target: str
    model_path: Path
    commands: list[str] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    flashed: bool = False
    details: dict = field(default_factory=dict)


#: marker ids come from ArUco's DICT_4X4_250: four per layout, so 62 layout codes (0-61). Its first
#: 50 ids are DICT_4X4_50's, so sheets printed with the 12 codes of earlier versions still read.
MAX_LAYOUT_CODES = 62


@dataclass(frozen=True)
class Layout:
    """Page geometry in millimetres (x to the right, y down, origin at the page's top-left)."""

    name: str
    code: int  # marker ids 4*code .. 4*code+3
    rows: str = "0123456789"  # the digit written in each row
    cols: int = 10
    page_mm: tuple[float, float] = (210.0, 297.0)  # A4       # width, height
    grid_mm: tuple[float, float] = (30.0, 38.0)  # top-left corner of the first box
    box_mm: tuple[float, float] = (16.5, 19.0)  # width, height of a writing box
    row_pitch_mm: float = 23.0
    marker_mm: float = 18.0
    marker_margin_mm: float = 8.0
    line_mm: float = 0.35

    def __post_init__(self):
        if not 0 <= self.code < MAX_LAYOUT_CODES:
            raise ValueError(
                f"layout {self.name!r}: code must be 0..{MAX_LAYOUT_CODES - 1} (four ArUco "
                f"markers per layout from DICT_4X4_250)"
            )
        if not self.rows or any(ch not in "0123456789" for ch in self.rows):
            raise ValueError(f"layout {self.name!r}: rows must be digits, got {self.rows!r}")

    @property
    def n_cells(self) -> int:
        return len(self.rows) * self.cols

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) of a writing box in mm."""
        x0, y0 = self.grid_mm
        w, h = self.box_mm
        return x0 + col * w, y0 + row * self.row_pitch_mm, w, h

    def marker_corners(self, corner: int) -> np.ndarray:
        """(4, 2) mm coordinates of a marker's corners, in ArUco order (clockwise from its top-left)."""
        m, s = self.marker_margin_mm, self.marker_mm
        pw, ph = self.page_mm
        x, y = [(m, m), (pw - m - s, m), (pw - m - s, ph - m - s), (m, ph - m - s)][corner]
        return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], np.float64)

    def marker_id(self, corner: int) -> int:
        return 4 * self.code + corner


@dataclass
class Recipe:
    """How to train: optimizer, schedule, batch size, epochs, loss, data pipeline."""

    name: str
    epochs: int
    batch_size: int
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9, Nesterov)
    lr: float = 1e-3  # constant lr, or the peak of the one-cycle schedule
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | onecycle
    warmup: float = 0.2  # one-cycle: share of the steps spent rising to the peak
    label_smoothing: float = 0.0
    loader: str = "batch"  # batch | per-sample
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    distill_weight: float = 0.7  # with teachers: share of the loss that follows their softened outputs
    distill_temperature: float = 4.0
    sam: float = 0.0  # sharpness-aware minimisation: radius rho of the weight step; 0 = off
    sam_group: int = 0  # SAM: sub-batch size m, each perturbed on its own ("m-sharpness"); 0 = batch
    description: str = ""

    def make_optimizer(self, params):
        import torch

        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)
        raise ValueError(f"recipe {self.name}: unknown optimizer {self.optimizer!r}")

    def make_scheduler(self, optimizer, steps_per_epoch: int, epochs: int):
        import torch

        if self.schedule == "constant":
            return None
        if self.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=self.lr,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                pct_start=self.warmup,
                div_factor=20.0,
                final_div_factor=200.0,
            )
        raise ValueError(f"recipe {self.name}: unknown schedule {self.schedule!r}")

    def make_ema(self, model):
        """The averaged copy that is evaluated, kept and exported, or None. Averaging the weights
        (and BatchNorm's running statistics) over the last ~1/(1-decay) steps smooths out the noise
        of a large learning rate: the average is ahead of the raw weights all through training."""
        if not self.ema:
            return None
        import torch
        from torch.optim.swa_utils import AveragedModel

        decay = self.ema

        @torch.no_grad()
        def average(ema_params, params, n_averaged):
            # the decay ramps up, so the average does not drag the random initialisation along:
            # (1+n)/(10+n) spans about the last n/9 steps and reaches 0.998 only after ~4,500
            # steps (9.6 epochs at batch 128), so in a 10-epoch run this ramp is the average
            # (called once per dtype: the integer group is BatchNorm's step counter, copied)
            if not ema_params[0].is_floating_point():
                torch._foreach_copy_(ema_params, params)
                return
            d = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
            torch._foreach_lerp_(ema_params, params, 1.0 - d)

        return AveragedModel(model, multi_avg_fn=average, use_buffers=True)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class QuantResult:
    """What a quantizer wrote: the model file, its width and target, and per-layer error."""

    path: Path
    bits: int
    target: str
    recipe: str
    seconds: float
    graph: Any = field(repr=False, default=None)
    layerwise: dict[str, float] = field(default_factory=dict)
    graphwise: dict[str, float] = field(default_factory=dict)
    side_files: list[Path] = field(default_factory=list)
    aligned: list[dict] = field(default_factory=list)


@dataclass
class QuantRequest:
    """What ``mnistp4 quantize`` asks of a quantizer (registry ``quantizers``).

    ``onnx_path`` is a private copy the quantizer may rewrite; ``out_path`` the file to write
    (its suffix tells which model format scores it); ``calib_images`` uint8 (N, 28, 28).
    """

    onnx_path: Path
    out_path: Path
    bits: int
    target: str
    calib_images: np.ndarray
    recipe: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


class _ItemAccess:
    """``record["key"]`` and ``record.get("key")``, as for the dicts earlier plugin API versions passed."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class DeployRequest(_ItemAccess):
    """What ``mnistp4 deploy`` (and the ``deploy`` step) asks of a deploy target.

    ``dry_run`` and ``port`` are independent: a dry run never writes to a device or a destination
    outside ``out_dir``; without a port a board target prints the commands and writes a bundle,
    while a non-board target (a copy to an SD card, a zip) does its job all the same.
    """

    model_path: Path
    out_dir: Path
    port: str | None = None
    dry_run: bool = False
    baud: int = 460800
    partitions: Path | None = None
    build: bool = False
    firmware_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SegmentOptions(_ItemAccess):
    """What a segmenter gets besides the image (picklable: segmenters run in worker processes).

    ``layouts``: every registered layout by name; ``normalize``: the project normalizer;
    ``rows``: the digit of each row (freeform sheets); ``strict_layout``: only the configured layout;
    ``strict_checker``: flag what the sheet checker doubts at all (``doubtful``; config
    ``strict_checker``). Item access (``options["rows"]``) works as for the dict earlier versions passed.
    """

    layouts: dict[str, Layout]
    normalize: Callable[[np.ndarray], np.ndarray]
    rows: str = "0123456789"
    strict_layout: bool = False
    strict_checker: bool = False
