"""Typed records passed between stages. Plain dataclasses: no behaviour beyond validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
