"""mnistp4: handwritten digits from sheets and tablets to an ESP32-P4 CrowPanel.

Plugins implement the hooks in :mod:`mnistp4.hookspecs` with ``@mnistp4.hookimpl``.
"""
from .hookspecs import hookimpl
from .records import DeployResult, Digit, DigitSet, ModelSpec, PipelineStep

__all__ = ["hookimpl", "Digit", "DigitSet", "ModelSpec", "PipelineStep", "DeployResult"]
__version__ = "0.1.0"
