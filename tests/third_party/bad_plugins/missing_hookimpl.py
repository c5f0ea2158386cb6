"""``register_models`` without ``@mnistp4.hookimpl``: it would never be called."""

from mnistp4 import ModelSpec


def build():
    raise AssertionError("never built")


def register_models(register):
    register("never-registered", ModelSpec("never-registered", build))
