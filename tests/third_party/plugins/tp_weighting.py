"""Weighting ``tp-capped``: MNIST once, custom digits oversampled ``factor`` times but at most a third
of the epoch, drawn with replacement."""

import mnistp4

MNISTP4_PLUGIN_API = "1.0"


def capped(n_mnist: int, n_custom: int, factor: int, generator):
    import torch

    k = min(n_custom * int(factor), n_mnist // 2) if n_custom else 0
    custom = n_mnist + torch.randint(n_custom, (k,), generator=generator) if k else torch.zeros(0, dtype=torch.long)
    indices = torch.cat([torch.arange(n_mnist), custom])
    indices = indices[torch.randperm(len(indices), generator=generator)]
    total = len(indices)
    composition = {"mnist": n_mnist, "custom": k, "total": total, "custom_share": k / total if total else 0.0}
    return indices, composition


@mnistp4.hookimpl
def register_weightings(register):
    register("tp-capped", capped, description="custom x factor, at most a third of the epoch")
