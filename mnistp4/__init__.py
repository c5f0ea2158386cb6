"""mnistp4: handwritten digits from sheets and tablets to an ESP32-P4 CrowPanel.

Plugins implement the hooks in :mod:`mnistp4.hookspecs` with ``@mnistp4.hookimpl`` and use the
types and helpers of the public plugin API, :mod:`mnistp4.api` (re-exported here).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl as hookimpl  # eager: every plugin module decorates with it

if TYPE_CHECKING:
    from .api import *  # noqa: F403 - the public plugin API

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The API (with the CLI's click and rich, and plugin discovery) is imported on first use:
    # a sheet worker process, which only segments, starts without it.
    if name.startswith("__") and name != "__all__" or importlib.util.find_spec(f"{__name__}.{name}"):
        # a submodule (``from mnistp4 import config``) is the import system's to load
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    api = importlib.import_module(".api", __name__)
    if name == "__all__":
        value: Any = list(api.__all__)
    elif name in api.__all__:
        value = getattr(api, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(importlib.import_module(".api", __name__).__all__))
