"""Model ``tp-mlp``: 784-32-10, trained by default with recipe ``tp-one`` and augmentation ``tp-jitter``."""

import mnistp4
from mnistp4 import ModelSpec

MNISTP4_PLUGIN_API = "1.0"


def build_mlp():
    import torch.nn as nn  # imported when used: worker processes that load every plugin stay light

    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 10))


@mnistp4.hookimpl
def register_models(register):
    register(
        "tp-mlp", ModelSpec("tp-mlp", build_mlp, "784-32-10 MLP (third-party)", recipe="tp-one", augment=("tp-jitter",))
    )
