"""A model whose builder returns no ``torch.nn.Module``."""

import mnistp4
from mnistp4 import ModelSpec


def build_nothing():
    return "a string, not a network"


@mnistp4.hookimpl
def register_models(register):
    register("not-a-module", ModelSpec("not-a-module", build_nothing))
