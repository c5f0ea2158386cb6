"""Weightings: the epoch's composition is what the factor says."""

from __future__ import annotations

import torch


def test_oversample_has_every_custom_digit_factor_times():
    from mnistp4.stages.training.weighting import oversample

    idx, comp = oversample(1000, 7, 50, torch.Generator().manual_seed(0))
    assert comp == {"mnist": 1000, "custom": 350, "total": 1350, "custom_share": round(350 / 1350, 4)}
    counts = torch.bincount(idx, minlength=1007)
    assert (counts[:1000] == 1).all() and (counts[1000:] == 50).all()
    assert not torch.equal(idx, torch.sort(idx).values)  # shuffled


def test_oversample_without_custom_digits_is_plain_mnist():
    from mnistp4.stages.training.weighting import oversample

    idx, comp = oversample(100, 0, 50, torch.Generator().manual_seed(0))
    assert comp["custom"] == 0 and sorted(idx.tolist()) == list(range(100))


def test_weighted_sampler_matches_the_composition_in_expectation():
    from mnistp4.stages.training.weighting import weighted

    idx, comp = weighted(6000, 20, 50, torch.Generator().manual_seed(0))
    assert comp["total"] == 7000
    assert abs(comp["custom"] - 1000) < 120  # expected 1000 custom draws of 7000
    assert idx.max() < 6020 and idx.min() >= 0


def test_training_prints_the_epoch_composition(make_app):
    app = make_app()
    assert {"oversample", "weighted"} <= set(app.registry.names("weightings"))
