"""Model plugins: the article's CNN exactly, the compact model within its device budget."""

from __future__ import annotations

import json

import pytest
import torch


def test_seed_cnn_is_the_article_cnn():
    from mnistp4.stages.models.common import count_macs, count_params
    from mnistp4.stages.models.seed_cnn import SPEC

    m = SPEC.build()
    assert count_params(m) == 421_834
    no_bn = sum(
        p.numel()
        for n, p in m.named_parameters()
        if not isinstance(dict(m.named_modules())[n.rsplit(".", 1)[0]], torch.nn.BatchNorm2d)
    )
    assert no_bn == 421_642
    assert count_macs(m) == 32 * 9 * 784 + 64 * 32 * 9 * 196 + 3136 * 128 + 128 * 10
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_p4net_fits_the_device_budget():
    from mnistp4.stages.models.common import summarize
    from mnistp4.stages.models.p4net import SPEC

    s = summarize(SPEC)
    assert s["macs"] <= 1_000_000
    assert s["int8_weight_bytes"] <= 100 * 1024
    assert SPEC.build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_p4net_plus_sits_between_p4net_and_the_article_cnn():
    from mnistp4.stages.models.common import summarize
    from mnistp4.stages.models.p4net import SPEC as P4
    from mnistp4.stages.models.p4net_plus import SPEC as PLUS
    from mnistp4.stages.models.seed_cnn import SPEC as SEED

    plus, p4, seed = summarize(PLUS), summarize(P4), summarize(SEED)
    assert p4["macs"] < plus["macs"] < seed["macs"]
    assert plus["macs"] == 16 * 9 * 784 + 32 * 16 * 9 * 196 + 32 * 32 * 9 * 144 + 64 * 32 * 9 * 16 + 1024 * 10
    assert plus["int8_weight_bytes"] <= 100 * 1024
    assert PLUS.build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_models_are_registered_and_listed(make_app):
    app = make_app()
    assert {"seed-cnn", "p4net", "p4net-plus"} <= set(app.registry.names("models"))
    assert app.config["model"] == "p4net-plus"


def test_models_cli_lists_params_and_macs(tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["seed-cnn"]["params"] == 421_834 and rows["p4net"]["macs"] < rows["seed-cnn"]["macs"]


def test_load_run_errors_name_the_file(tmp_path):
    from mnistp4.errors import InputError
    from mnistp4.stages.models.common import load_run

    with pytest.raises(InputError, match="config.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": "p4net", "builder": "plugins.model_p4net:build"}))
    torch.save(__import__("mnistp4.stages.models.seed_cnn", fromlist=["x"]).build().state_dict(), tmp_path / "model.pt")
    with pytest.raises(InputError, match="another architecture"):
        load_run(tmp_path)
