"""The stage implementations shipped with mnistp4, one plugin per module.

Modules whose name starts with ``_`` are shared helpers imported by plugins, not plugins.
"""
