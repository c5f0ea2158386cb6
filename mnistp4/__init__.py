"""mnistp4: handwritten digits from sheets and tablets to an ESP32-P4 CrowPanel.

Plugins implement the hooks in :mod:`mnistp4.hookspecs` with ``@mnistp4.hookimpl`` and use the
types and helpers of the public plugin API, :mod:`mnistp4.api` (re-exported here).
"""

from .api import *  # noqa: F403 - the public plugin API
from .api import __all__ as _api_all

__all__ = list(_api_all)
__version__ = "0.1.0"
