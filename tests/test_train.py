"""Training end to end on tiny data: run dir contents, resume after an interruption, repeatability."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_kit import plugin_dir, write_digit_folder


@pytest.fixture
def custom_folder(tmp_path, mnist_dir):
    from mnistp4.stages.data.mnist_source import load_mnist

    test = load_mnist(mnist_dir, "test")
    imgs, labels = test.images[-120:], test.labels[-120:]
    sources = [f"writer{i % 4}" for i in range(120)]
    flags = ["small" if i % 30 == 0 else "" for i in range(120)]
    return write_digit_folder(tmp_path / "digits", imgs, labels, sources, flags)


def test_one_epoch_end_to_end(make_app, tmp_path, custom_folder):
    from mnistp4.stages.models.common import load_run
    from mnistp4.stages.models.evaluate import evaluate_model, load_data
    from mnistp4.stages.training.run import train_run

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))])
    out = tmp_path / "run"
    metrics = train_run(
        app, out=out, model="p4net", recipe="fast", custom=[str(custom_folder)], epochs=1, seed=1, weight=3, quiet=True
    )
    for name in (
        "model.pt",
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "model.onnx",
        "curves.png",
        "confusion.png",
        "misclassified.png",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "custom_accuracy", "per_class", "epochs", "train_seconds", "params", "macs"):
        assert key in saved
    assert saved["epochs"] == 1 and saved["params"] == 32462 and saved["macs"] == 887488
    # 120 custom digits from 4 writers, 4 flagged ones left out; 1 writer held out
    assert saved["composition"]["mnist"] == 384
    assert saved["composition"]["custom"] % 3 == 0 and 0 < saved["composition"]["custom"] < 116 * 3
    assert saved["custom_total"] == 116 * 3 // 3 - saved["composition"]["custom"] // 3
    assert saved["onnx"]["max_abs_diff"] <= 1e-4
    confusion = np.array(saved["confusion"])  # the 192 digits of the tiny test split
    assert confusion.sum() == 192 and metrics["test_accuracy"] == pytest.approx(np.trace(confusion) / 192)
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["normalization"] == {"mean": 0.1307, "std": 0.3081} and cfg["model"] == "p4net"
    model, _ = load_run(out)
    assert model(__import__("torch").zeros(2, 1, 28, 28)).shape == (2, 10)
    # .pt and .onnx agree on the held-out folder digits
    data = load_data(app, str(custom_folder))
    pt, _ = evaluate_model(app, out, data)
    ox, _ = evaluate_model(app, out / "model.onnx", data)
    assert pt["confusion"] == ox["confusion"]


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted_run(make_app, tmp_path):
    from mnistp4.stages.training.run import train_run

    kw = dict(model="p4net", recipe="fast", custom=[], epochs=2, seed=5, export=False, quiet=True, threads=1)
    plain = train_run(make_app(plugin_dirs=[str(plugin_dir(tmp_path))]), out=tmp_path / "a", **kw)

    stopping = make_app(plugin_dirs=[str(plugin_dir(tmp_path, stop=True))])
    with pytest.raises(KeyboardInterrupt):
        train_run(stopping, out=tmp_path / "b", **kw)
    assert not (tmp_path / "b" / "metrics.json").exists()
    with pytest.raises(Exception, match="--resume"):
        train_run(make_app(plugin_dirs=[str(plugin_dir(tmp_path))]), out=tmp_path / "b", **kw)
    resumed = train_run(make_app(plugin_dirs=[str(plugin_dir(tmp_path))]), out=tmp_path / "b", resume=True, **kw)

    assert resumed["epochs"] == plain["epochs"] == 2
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for a, b in zip(plain["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_accuracy"] == b["test_accuracy"]


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(make_app, tmp_path, tiny_run):
    from mnistp4.stages.training.run import train_run

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))])
    kw = dict(model="p4net", recipe="fast", custom=[], epochs=1, export=False, quiet=True, threads=1)
    a = json.loads((tiny_run / "metrics.json").read_text())  # the shared run: these settings, seed 0
    b = train_run(app, out=tmp_path / "b", seed=0, **kw)
    c = train_run(app, out=tmp_path / "c", seed=8, **kw)
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-6)
    assert a["confusion"] == b["confusion"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]


@pytest.mark.slow
def test_seed_recipe_runs_the_per_sample_pipeline(make_app, tmp_path):
    from mnistp4.stages.training.run import train_run

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))])
    m = train_run(app, out=tmp_path / "seed", model="seed-cnn", recipe="seed", custom=[], epochs=1, seed=0, quiet=True)
    assert m["params"] == 421834 and m["onnx"]["max_abs_diff"] <= 1e-4
    assert m["composition"]["total"] == 384
    assert m["torch_threads"] in (1, 2)  # chosen by the load, and recorded: it changes the weights


@pytest.mark.slow
def test_train_cli_json_and_errors(tmp_path, monkeypatch, capsys):
    from mnistp4.cli import main

    monkeypatch.chdir(tmp_path)
    pdir = str(plugin_dir(tmp_path))
    rc = main(
        ["--plugins-dir", pdir, "train", "--epochs", "1", "--out", "r1", "--no-export", "--threads", "1", "--json"]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "p4net-plus" and out["epochs"] == 1 and (tmp_path / "r1" / "model.pt").is_file()
    assert json.loads((tmp_path / "r1" / "metrics.json").read_text())["torch_threads"] == 1  # as asked
    # --resume takes the run's own settings (a finished run is only re-reported)
    assert main(["--plugins-dir", pdir, "train", "--out", "r1", "--resume", "--no-export", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 1
    # a second run into the same dir must not silently overwrite it
    assert main(["--plugins-dir", pdir, "train", "--epochs", "1", "--out", "r1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--plugins-dir", pdir, "train", "--custom", "no/such/folder", "--out", "r2"]) == 1
    assert "no/such/folder" in capsys.readouterr().err
    assert main(["--plugins-dir", pdir, "train", "--model", "nope", "--out", "r3"]) == 2  # a usage error
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_step_trains_with_the_segmented_digits(make_app, tmp_path, custom_folder):
    from mnistp4.stages.training.train import train_step

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))], settings=["epochs=1", "weight=2", "run_name=pipe"])
    result = train_step(app, {"data_dir": str(custom_folder)})
    run_dir = app.config.path("runs_dir") / "pipe"
    assert result["run_dir"] == str(run_dir) and (run_dir / "model.onnx").is_file()
    assert result["custom_accuracy"] is not None  # the segmented digits were used, one writer held out
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["custom"] == [str(custom_folder)] and cfg["epochs"] == 1
    again = train_step(app, {"data_dir": str(custom_folder)})  # `mnistp4 run` twice retrains in place
    assert again["run_dir"] == result["run_dir"]


def test_auto_threads_takes_the_free_cores(monkeypatch):
    import os

    import mnistp4.stages.training.loop as loop

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for busy, threads in ((9.0, 1), (1.0, 1), (0.0, 2)):
        monkeypatch.setattr(loop, "other_runnable", lambda b=busy: b)
        assert loop.auto_threads() == threads
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(loop, "other_runnable", lambda: 3.0)
    assert loop.auto_threads(limit=2) == 2


def test_other_runnable_reads_the_running_tasks():
    from mnistp4.stages.training.loop import LOADAVG, other_runnable

    busy = other_runnable(samples=3)
    assert busy >= 0.0
    if LOADAVG.is_file():
        assert busy == int(busy)  # a count of running tasks (Linux), not a lagging average


def test_other_runnable_falls_back_to_the_load_average(monkeypatch, tmp_path):
    """Without /proc/loadavg (macOS, Windows): the 1-minute load average, or 0 where there is none."""
    import os

    import mnistp4.stages.training.loop as loop

    monkeypatch.setattr(loop, "LOADAVG", tmp_path / "no-loadavg")
    load = getattr(os, "getloadavg", None)
    before = load()[0] if load else 0.0
    busy = loop.other_runnable(samples=3)
    after = load()[0] if load else 0.0
    assert busy in (before, after)  # the load average may tick between the looks


def test_weight_average_is_what_gets_kept(make_app, tmp_path, tiny_run):
    """With ``ema`` the saved model is the running average of the weights, not the last raw weights,
    and the average survives a resume (it is in the checkpoint)."""
    import torch

    from mnistp4.stages.training.loop import CHECKPOINT

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))])
    assert app.get("recipes", "fast").ema > 0  # tiny_run: one epoch of recipe fast
    ckpt = torch.load(tiny_run / CHECKPOINT, weights_only=False)
    kept = torch.load(tiny_run / "model.pt", weights_only=True)
    raw, avg = ckpt["model"], ckpt["ema"]
    assert int(avg["n_averaged"]) == ckpt["state"]["epoch"] * 3  # one update per step (3 steps of tiny data)
    name = "features.0.weight"
    assert torch.equal(kept[name], avg["module." + name])
    assert not torch.equal(kept[name], raw[name])


@pytest.mark.slow
def test_the_last_epoch_is_kept_never_the_best_test_epoch(make_app, tmp_path):
    """The test set only watches: model.pt is the last epoch's weights, the reported accuracy is
    that epoch's, whichever epoch scored highest on the test set."""
    import torch

    from mnistp4.stages.training.loop import CHECKPOINT
    from mnistp4.stages.training.run import train_run

    app = make_app(plugin_dirs=[str(plugin_dir(tmp_path))])
    m = train_run(
        app, out=tmp_path / "r", model="p4net", recipe="fast", custom=[], epochs=3, export=False, quiet=True, threads=1
    )
    assert m["kept_epoch"] == m["epochs"] == 3
    assert m["test_accuracy"] == m["history"][-1]["test_accuracy"]
    assert m["best_test_accuracy"] == max(h["test_accuracy"] for h in m["history"])
    assert m["history"][m["best_test_epoch"] - 1]["test_accuracy"] == m["best_test_accuracy"]
    ckpt = torch.load(tmp_path / "r" / CHECKPOINT, weights_only=False)
    kept = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert all(torch.equal(kept[k], ckpt["ema"]["module." + k]) for k in kept)
    # a finished run resumed with nothing left to train re-derives model.pt from its checkpoint
    torch.save({k: torch.zeros_like(v) for k, v in kept.items()}, tmp_path / "r" / "model.pt")
    again = train_run(
        app,
        out=tmp_path / "r",
        model="p4net",
        recipe="fast",
        custom=[],
        epochs=3,
        export=False,
        quiet=True,
        threads=1,
        resume=True,
    )
    assert again["test_accuracy"] == m["test_accuracy"] and again["kept_epoch"] == 3
    restored = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert all(torch.equal(restored[k], kept[k]) for k in kept)


def test_weight_average_warms_up():
    """The average's decay ramps up from 0.1, so after one step it is mostly the new weights."""
    import torch

    from mnistp4.stages.training.loop import Recipe

    net = torch.nn.Linear(2, 1)
    avg = Recipe("t", epochs=1, batch_size=1, ema=0.999).make_ema(net)
    with torch.no_grad():
        start = net.weight.clone()
        net.weight.add_(1.0)
    avg.update_parameters(net)  # first call: a copy
    with torch.no_grad():
        net.weight.add_(1.0)
    avg.update_parameters(net)  # decay min(0.999, 2/11): 9/11 of the way to the new weights
    expected = start + 1.0 + 9 / 11
    assert torch.allclose(avg.module.weight, expected, atol=1e-6)


def test_distillation_loss_math():
    """Weight 0 is the label loss; a student that matches its teacher adds no distillation term;
    a student that disagrees pays T^2 * KL at temperature T."""
    import torch
    import torch.nn.functional as F

    from mnistp4.stages.training.loop import distillation_loss, soft_targets

    x = torch.randn(8, 3)
    teacher = torch.nn.Linear(3, 10)
    label_loss = torch.tensor(1.25)
    with torch.no_grad():
        same = teacher(x)

    def loss(student, teachers, weight, temperature):
        return float(
            distillation_loss(
                student, soft_targets(teachers, x, temperature), label_loss, weight=weight, temperature=temperature
            )
        )

    assert loss(same, [teacher], 0.0, 4.0) == pytest.approx(1.25)
    assert loss(same, [teacher], 1.0, 3.0) == pytest.approx(0.0, abs=1e-6)
    other = torch.zeros(8, 10)  # uniform student
    p = F.softmax(same / 3.0, dim=1)
    kl = float((p * (p.log() - torch.log(torch.full_like(p, 0.1)))).sum(1).mean()) * 9.0
    assert loss(other, [teacher], 1.0, 3.0) == pytest.approx(kl, rel=1e-5)
    # two teachers: their softened probabilities are averaged
    zero = torch.nn.Linear(3, 10)
    torch.nn.init.zeros_(zero.weight), torch.nn.init.zeros_(zero.bias)
    mixed = 0.5 * p + 0.05
    kl2 = float((mixed * (mixed.log() - torch.log(torch.full_like(p, 0.1)))).sum(1).mean()) * 9.0
    assert loss(other, [teacher, zero], 1.0, 3.0) == pytest.approx(kl2, rel=1e-5)


@pytest.mark.slow
def test_train_with_a_teacher_records_it_and_resumes(tmp_path, monkeypatch, capsys):
    """`--teacher RUN_DIR` distills from a trained run; the run remembers its teacher, `--resume`
    picks it up, and a missing teacher is a clear error."""
    from mnistp4.cli import main

    monkeypatch.chdir(tmp_path)
    pdir = str(plugin_dir(tmp_path))
    base = ["--plugins-dir", pdir, "train", "--no-export", "--threads", "1", "--json"]
    assert main(base + ["--model", "p4net", "--epochs", "1", "--out", "teacher"]) == 0
    capsys.readouterr()
    assert main(base + ["--model", "seed-cnn", "--epochs", "1", "--out", "student", "--teacher", "teacher"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "seed-cnn"
    cfg = json.loads((tmp_path / "student" / "config.json").read_text())
    assert cfg["teachers"] == ["teacher"] and cfg["recipe_settings"]["distill_weight"] > 0
    assert main(base + ["--out", "student", "--resume"]) == 0  # the saved teacher, not a changed identity
    capsys.readouterr()
    assert main(base + ["--epochs", "1", "--out", "s2", "--teacher", "no/such/run"]) == 1
    assert "no/such/run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_model_trains_with_its_preferred_recipe_unless_the_user_chose(tmp_path, monkeypatch, capsys):
    """p4net declares `compact` + `rotate-shift-small`; they replace only the shipped defaults. One
    real training run shows the command uses them; the other choices are the configuration that
    `train` resolves before it trains (the same call)."""
    from mnistp4.app import create_app
    from mnistp4.cli import main
    from mnistp4.stages.training.run import apply_model_defaults

    monkeypatch.chdir(tmp_path)
    pdir = str(plugin_dir(tmp_path))
    base = ["--plugins-dir", pdir, "train", "--no-export", "--threads", "1", "--epochs", "1", "--json"]
    assert main(base + ["--model", "p4net", "--out", "pref"]) == 0
    assert json.loads(capsys.readouterr().out)["recipe"] == "compact"
    cfg = json.loads((tmp_path / "pref" / "config.json").read_text())
    assert cfg["recipe"] == "compact" and cfg["augment"] == ["rotate-shift-small"]

    def resolved(**chosen) -> dict:
        app = create_app(root=tmp_path, plugin_dirs=[pdir])
        app.override(**chosen)
        apply_model_defaults(app)
        chosen = {k: app.config[k] for k in ("model", "recipe", "augment")}
        return chosen | {"settings": app.get("recipes", chosen["recipe"]).as_dict()}

    mine = resolved(model="p4net", recipe="fast", augment=["rotate-shift"])
    assert mine["recipe"] == "fast" and mine["augment"] == ["rotate-shift"]
    # a config file's choice wins as well; the default model has no preference
    (tmp_path / "mnistp4.toml").write_text('recipe = "fast"\n')
    from_file = resolved(model="p4net")
    assert from_file["recipe"] == "fast" and from_file["augment"] == ["rotate-shift-small"]
    default = resolved()
    assert default["model"] == "p4net-plus" and default["recipe"] == "fast" and default["augment"] == ["rotate-shift"]
    (tmp_path / "mnistp4.toml").unlink()
    article = resolved(model="seed-cnn")
    settings = article["settings"]
    assert (
        article["recipe"] == "sam-m32"
        and settings["sam"] > 0
        and settings["sam_group"] == 32
        and article["augment"] == ["rotate-shift-small"]
    )


def test_sharpness_aware_gradients_are_taken_at_the_worst_nearby_weights():
    """SAM: the gradient comes from w + rho * g / |g|; the weights and BatchNorm's running
    statistics are as before the second pass."""
    import torch

    from mnistp4.stages.training.loop import sharpness_aware_gradients

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def step_loss():
        return torch.nn.functional.mse_loss(model(x), y)

    step_loss().backward()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    g = [p.grad.clone() for p in model.parameters()]
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    # expected: the plain gradient of a copy moved by rho along g/|g| (its BatchNorm frozen the same way)
    shadow = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    shadow.load_state_dict(weights)
    with torch.no_grad():
        for p, gi in zip(shadow.parameters(), g):
            p.add_(gi * 0.05 / norm)
    torch.nn.functional.mse_loss(shadow(x), y).backward()
    sharpness_aware_gradients(model, step_loss, 0.05)
    for p, q in zip(model.parameters(), shadow.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    assert not all(torch.allclose(p.grad, gi) for p, gi in zip(model.parameters(), g))
    for k, v in model.state_dict().items():
        assert torch.allclose(v.float(), weights[k].float()), k  # weights back, running stats untouched
    assert model[1].momentum == 0.1


def test_grouped_sharpness_aware_gradients_average_each_groups_own_sam_gradient():
    """m-sharpness: every sub-batch is perturbed along its own gradient; ``.grad`` is the
    size-weighted mean of the per-group SAM gradients, and the weights end where they started."""
    import torch

    from mnistp4.stages.training.loop import grouped_sharpness_aware_gradients, sharpness_aware_gradients

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    x, y = torch.randn(10, 3), torch.randn(10, 1)

    def step_loss(xb=x, yb=y, sb=None):
        return torch.nn.functional.mse_loss(model(xb), yb)

    weights = {k: v.clone() for k, v in model.state_dict().items()}
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for xb, yb in ((x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])):  # groups of 4: 4 + 4 + 2
        model.zero_grad()
        step_loss(xb, yb).backward()
        sharpness_aware_gradients(model, lambda xb=xb, yb=yb: step_loss(xb, yb), 0.05)
        for e, p in zip(expected, model.parameters()):
            e.add_(p.grad * len(yb) / 10)
    model.zero_grad()
    step_loss().backward()
    sharpness_aware_gradients(model, step_loss, 0.05)
    whole = [p.grad.clone() for p in model.parameters()]

    loss = grouped_sharpness_aware_gradients(model, step_loss, x, y, 0.05, 4)
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, e, atol=1e-6)
    assert not all(torch.allclose(p.grad, w, atol=1e-6) for p, w in zip(model.parameters(), whole))
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    sizes = torch.tensor([4.0, 4.0, 2.0])
    per_group = torch.stack([torch.nn.functional.mse_loss(model(x[a:b]), y[a:b]) for a, b in ((0, 4), (4, 8), (8, 10))])
    assert abs(float(loss) - float((per_group * sizes).sum() / 10)) < 1e-6
    # a group as large as the batch is plain SAM
    grouped_sharpness_aware_gradients(model, step_loss, x, y, 0.05, 10)
    for p, w in zip(model.parameters(), whole):
        assert torch.allclose(p.grad, w, atol=1e-6)
    # teachers' targets travel with their group, to both passes
    seen = []
    soft = torch.arange(10.0).reshape(10, 1)
    grouped_sharpness_aware_gradients(
        model, lambda xb, yb, sb: seen.append(sb) or step_loss(xb, yb), x, y, 0.05, 4, soft
    )
    assert [t.flatten().tolist() for t in seen] == [[0, 1, 2, 3]] * 2 + [[4, 5, 6, 7]] * 2 + [[8, 9]] * 2


VIEW_MODEL_PLUGIN = """
import mnistp4
from mnistp4 import ModelSpec


def build():
    import torch.nn as nn

    class ViewNet(nn.Module):  # flattens with .view: needs contiguous maps
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 28 * 28, 10)

        def forward(self, x):
            x = self.conv2(self.conv1(x).relu()).relu()
            return self.fc(x.view(x.size(0), -1))

    return ViewNet()


@mnistp4.hookimpl
def register_models(register):
    register("view-net", ModelSpec("view-net", build, "a conv, then .view"))
"""


def test_channels_last_only_where_the_model_runs_with_it(make_app, tmp_path):
    """The shipped CNN trains on channels-last maps; the probe changes no statistic and leaves the
    mode as it was. A plugin model whose forward needs contiguous maps keeps them and still trains
    and exports; a model without convolutions is left alone."""
    import torch

    from mnistp4.stages.models.nets import P4NetPlus
    from mnistp4.stages.training.loop import memory_layout
    from mnistp4.stages.training.run import train_run

    net = P4NetPlus()
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone(), int(bn.num_batches_tracked)
    assert memory_layout(net, torch.device("cpu")) == torch.channels_last
    conv = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][1]  # 16 channels in
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert torch.equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == before[1]
    assert net.training
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    assert memory_layout(mlp, torch.device("cpu")) == torch.contiguous_format

    plugins = plugin_dir(tmp_path)
    (plugins / "view_model.py").write_text(VIEW_MODEL_PLUGIN)
    app = make_app(plugin_dirs=[str(plugins)])
    view_net = app.get("models", "view-net").build()
    assert memory_layout(view_net, torch.device("cpu")) == torch.contiguous_format
    weight = view_net.conv2.weight
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    out = tmp_path / "view-run"
    metrics = train_run(app, out=out, model="view-net", recipe="fast", custom=[], epochs=1, seed=0, quiet=True)
    assert metrics["epochs"] == 1 and metrics["test_accuracy"] > 0.2
    assert json.loads((out / "metrics.json").read_text())["onnx"]["max_abs_diff"] <= 1e-4
