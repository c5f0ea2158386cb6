"""Weightings: how an epoch mixes MNIST with the (few) custom digits.

A weighting is ``weighting(n_mnist, n_custom, factor, generator) -> (indices, composition)``.
``indices`` index the concatenation [MNIST..., custom...] (custom digit ``j`` is ``n_mnist + j``),
in training order; ``composition`` says how many samples of each kind the epoch holds.

* ``oversample`` (the article's): every MNIST digit once, every custom digit ``factor`` times.
* ``weighted``: a weighted sampler; the same epoch length, drawn with replacement where a custom
  digit is ``factor`` times as likely as an MNIST digit (so the *expected* composition matches).
"""

from __future__ import annotations

from mnistp4 import hookimpl


def composition(indices, n_mnist: int) -> dict:
    custom = int((indices >= n_mnist).sum())
    total = int(len(indices))
    return {
        "mnist": total - custom,
        "custom": custom,
        "total": total,
        "custom_share": round(custom / total, 4) if total else 0.0,
    }


def oversample(n_mnist: int, n_custom: int, factor: int, generator):
    """every MNIST digit once, every custom digit `factor` times, shuffled"""
    import torch

    idx = torch.cat([torch.arange(n_mnist), torch.arange(n_mnist, n_mnist + n_custom).repeat(max(factor, 0))])
    idx = idx[torch.randperm(len(idx), generator=generator)]
    return idx, composition(idx, n_mnist)


def weighted(n_mnist: int, n_custom: int, factor: int, generator):
    """weighted sampler with replacement: custom digits `factor` times as likely"""
    import torch

    total = n_mnist + n_custom * max(factor, 0)
    weights = torch.cat([torch.ones(n_mnist), torch.full((n_custom,), float(factor))])
    idx = torch.multinomial(weights, total, replacement=True, generator=generator)
    return idx, composition(idx, n_mnist)


@hookimpl
def register_weightings(register):
    register("oversample", oversample, description="MNIST once + custom digits x weight (the article's)")
    register("weighted", weighted, description="weighted sampler with replacement, custom x weight as likely")
