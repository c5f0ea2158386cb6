"""Configuration: shipped defaults < ``[tool.mnistp4]`` in pyproject.toml < ``mnistp4.toml``
< environment variables < command line. Every value remembers where it came from.

Keys are declared (core keys below, plugin keys through ``register_config_keys``); the type of a
key is the type of its default. Unknown keys, wrong types and values out of range (``RANGES``) are
errors naming the key, raised when the value is read, before any stage runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class Key:
    name: str
    default: Any
    help: str
    owner: str = "core"


#: core keys: (default, help). Stage plugins read these; they may declare more.
CORE_KEYS: dict[str, tuple[Any, str]] = {
    "raw_scans": ("raw_scans", "folder of input sheets (never modified)"),
    "data_dir": ("data", "folder of segmented digits: images/ + manifest.csv"),
    "runs_dir": ("runs", "folder that holds training runs"),
    "run_name": ("default", "name of the run dir that `mnistp4 run` trains into"),
    "mnist_dir": (
        "",
        "folder with the four MNIST IDX files (.gz or raw); empty: $MNISTP4_MNIST_DIR, else the cache, else download",
    ),
    "cache_dir": ("", "download cache; empty: $XDG_CACHE_HOME/mnistp4 or ~/.cache/mnistp4"),
    "download": (True, "download MNIST when it is not found locally"),
    "plugins": ([], "extra plugin folders, .py files or module names to load"),
    "layout": ("grid-10x10", "sheet layout for templates and the template segmenter"),
    "segmenter": ("auto", "segmenter: auto picks template or freeform per sheet"),
    "normalizer": ("mnist", "the digit normalizer every stage uses"),
    "workers": (2, "processes for batch work, the command's own included"),
    "model": ("p4net-plus", "model architecture"),
    "recipe": ("fast", "training recipe"),
    "epochs": (0, "training epochs; 0 = the recipe's own default"),
    "weight": (20, "oversampling factor of custom digits"),
    "weighting": ("oversample", "weighting strategy that mixes MNIST and custom digits"),
    "augment": (["rotate-shift"], "augmentations applied to training batches"),
    "custom_augment": ([], "extra augmentations for the custom digits only, after `augment`"),
    "custom": ([], "custom digit sources for training (data dirs or source names)"),
    "seed": (0, "random seed"),
    "quantizer": ("espdl", "quantization backend"),
    "bits": (8, "quantization bits (8 or 16)"),
    "target": ("esp32p4", "quantization target chip"),
    "calib": (256, "number of calibration images"),
    "deploy_target": ("crowpanel-p4", "deploy target"),
    "port": ("", "serial port of the board; empty: dry run"),
}

#: environment variables that set keys (after config files, before the command line)
ENV_KEYS = {
    "mnist_dir": "MNISTP4_MNIST_DIR",
    "cache_dir": "MNISTP4_CACHE_DIR",
    "port": "MNISTP4_PORT",
    "semeion_dir": "MNISTP4_SEMEION_DIR",
}


#: allowed values of numeric keys (core and shipped plugins): key -> (test, what is allowed)
RANGES: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: v >= 0, ">= 1, or 0 for the recipe's default"),
    "weight": (lambda v: v > 0, "> 0 (1 = custom digits as often as MNIST digits)"),
    "workers": (lambda v: 1 <= v <= 256, "between 1 and 256"),
    "bits": (lambda v: v in (8, 16), "8 or 16"),
    "calib": (lambda v: 1 <= v <= 100_000, "between 1 and 100000"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "serve_port": (lambda v: 0 <= v <= 65535, "between 0 and 65535 (0 = any free port)"),
    "flash_baud": (lambda v: v > 0, "> 0"),
    "qat_epochs": (lambda v: v >= 0, ">= 0 (0 = no fine-tuning)"),
    "qat_lr": (lambda v: 0 < v < 1, "between 0 and 1"),
    "quant_probes": (lambda v: v >= 1, ">= 1"),
    "calib_custom_share": (lambda v: v == -1 or 0 <= v <= 1, "between 0 and 1, or -1"),
}


class Config:
    """Effective configuration with provenance. ``config["epochs"]`` or ``config.get("epochs")``."""

    def __init__(self, root: Path, keys: dict[str, Key]):
        self.root = root
        self.keys = dict(keys)
        self._values: dict[str, Any] = {k: _copy(v.default) for k, v in self.keys.items()}
        self._origin: dict[str, str] = {
            k: "default" if v.owner == "core" else f"default ({v.owner})" for k, v in self.keys.items()
        }
        self._pending: dict[str, tuple[Any, str]] = {}  # values read before their key was declared

    # -- reading -------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise ConfigError(f"unknown configuration key {key!r}")
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def origin(self, key: str) -> str:
        return self._origin[key]

    def path(self, key: str) -> Path:
        """A path-valued key, resolved against the project root."""
        value = self[key]
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else (self.root / p)

    def items(self):
        for k in sorted(self._values):
            yield k, self._values[k], self._origin[k]

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v, _ in self.items()}

    # -- writing -------------------------------------------------------------------------------
    def declare(self, key: Key) -> None:
        if key.name in self.keys and self.keys[key.name].owner != key.owner:
            raise ConfigError(
                f"configuration key {key.name!r} is declared by {self.keys[key.name].owner!r} "
                f"and again by {key.owner!r}"
            )
        self.keys[key.name] = key
        self._values.setdefault(key.name, _copy(key.default))
        self._origin.setdefault(key.name, f"default ({key.owner})")

    def set(self, key: str, value: Any, origin: str, *, from_text: bool = False) -> None:
        if key not in self.keys:
            self._pending[key] = (value, origin)  # checked in validate_pending(), once plugins declared theirs
            return
        value = _coerce(key, value, self.keys[key].default, origin, from_text)
        test, allowed = RANGES.get(key, (None, ""))
        if test is not None and isinstance(value, (int, float)) and not test(value):
            raise ConfigError(f"configuration key {key!r} (from {origin}) must be {allowed}, got {value!r}")
        self._values[key] = value
        self._origin[key] = origin

    def apply_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for key, (value, origin) in pending.items():
            if key not in self.keys and origin.startswith("$"):
                continue  # an environment variable for a plugin that is not loaded: nothing reads it
            if key not in self.keys:
                known = ", ".join(sorted(self.keys))
                raise ConfigError(f"unknown configuration key {key!r} (from {origin}); known keys: {known}")
            self.set(key, value, origin, from_text=origin.startswith(("$", "--set")))


def load(
    root: Path | None = None,
    extra_files: list[Path] | None = None,
    cli_values: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read every configuration layer. Plugin keys may be declared later with ``declare`` and
    ``apply_pending`` then checks the values that were waiting for them."""
    env_vars: Mapping[str, str] = os.environ if env is None else env
    root = find_root(Path.cwd()) if root is None else Path(root)
    cfg = Config(root, {k: Key(k, d, h) for k, (d, h) in CORE_KEYS.items()})
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("mnistp4", {})
        _apply_table(cfg, table, f"{pyproject.name} [tool.mnistp4]")
    if (root / "mnistp4.toml").is_file():
        _apply_table(cfg, _read_toml(root / "mnistp4.toml"), "mnistp4.toml")
    for f in extra_files or []:
        if not Path(f).is_file():
            raise ConfigError(f"configuration file {f} does not exist")
        _apply_table(cfg, _read_toml(Path(f)), str(f))
    for key, var in ENV_KEYS.items():
        if env_vars.get(var):
            cfg.set(key, env_vars[var], f"${var}", from_text=True)
    for item in cli_values or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        cfg.set(key.strip(), value.strip(), "--set", from_text=True)
    return cfg


def find_root(start: Path) -> Path:
    """The nearest folder (start or a parent) with mnistp4.toml or a pyproject.toml that has a
    [tool.mnistp4] table; else ``start`` itself."""
    for d in [start, *start.parents]:
        if (d / "mnistp4.toml").is_file():
            return d
        pp = d / "pyproject.toml"
        if pp.is_file():
            try:
                if "mnistp4" in _read_toml(pp).get("tool", {}):
                    return d
            except ConfigError:
                pass
    return start


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8: save it as UTF-8") from None
    except (ValueError, RecursionError) as e:  # TOMLDecodeError is a ValueError; so is an over-long number
        raise ConfigError(
            f"{path}: not valid TOML: {'nested too deeply' if isinstance(e, RecursionError) else e}"
        ) from None


def _apply_table(cfg: Config, table: dict, origin: str) -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            raise ConfigError(f"configuration key {key!r} in {origin}: sub-tables are not supported")
        cfg.set(key, value, origin)


def _copy(v):
    return list(v) if isinstance(v, list) else v


def _coerce(key: str, value: Any, default: Any, origin: str, from_text: bool) -> Any:
    """Check ``value`` against the type of ``default``; text (env, --set) is parsed first."""
    want = type(default)
    if from_text and isinstance(value, str) and want is not str:
        text = value.strip()
        try:
            if want is bool:
                low = text.lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = low in ("1", "true", "yes", "on")
            elif want is int:
                number = int(text, 0)
                if number.bit_length() > 64:  # 0x... text can be any length; no setting needs more
                    raise ValueError
                value = number
            elif want is float:
                value = float(text)
            elif want is list:
                value = [p.strip() for p in text.split(",") if p.strip()]
        except ValueError:
            raise ConfigError(
                f"configuration key {key!r} (from {origin}) must be {want.__name__}, got {value!r}"
            ) from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is list and ok:
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        raise ConfigError(
            f"configuration key {key!r} (from {origin}) must be {want.__name__}"
            f"{' of strings' if want is list else ''}, got {type(value).__name__} {value!r}"
        )
    return value
