"""Dataset source ``mnist`` (override): the first digits of the shipped MNIST source, so that runs are quick.
The shipped source is reached through ``ctx.registry.replaced``."""

import mnistp4
from mnistp4 import DigitSet

MNISTP4_PLUGIN_API = "1.0"


def small_mnist(ctx, split: str) -> DigitSet:
    shipped = ctx.registry.replaced("dataset_sources", "mnist")
    full = shipped(ctx, split)
    n = int(ctx.config["tp_mnist_train" if split == "train" else "tp_mnist_test"])
    sources = None if full.sources is None else full.sources[:n]
    return DigitSet(full.images[:n], full.labels[:n], sources, f"{full.name or 'mnist'}[:{n}]")


@mnistp4.hookimpl
def register_config_keys(register):
    register("tp_mnist_train", 3000, "digits of MNIST train the small mnist source keeps")
    register("tp_mnist_test", 500, "digits of MNIST test the small mnist source keeps")


@mnistp4.hookimpl
def register_dataset_sources(register):
    register("mnist", small_mnist, override=True, description="the first digits of MNIST (third-party)")
