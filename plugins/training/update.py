"""``mnistp4 update RUN_DIR [--out NEW] [--data DIR] [--force]``: a short fine-tune of a finished run
on MNIST plus every custom digit of the data dir (the ones saved from ``/try`` included), then the
chip-rounding fine-tuning, Int8 quantization and verification, into a new run dir.

Schedule (why it is short): the run is already trained, so one pass over a random slice of MNIST
train (``UPDATE_MNIST`` digits) with the custom digits in every batch (about ``CUSTOM_SHARE`` of it)
moves it towards the new handwriting without forgetting MNIST (:func:`finetune_float`: AdamW,
one-cycle to 1e-4 (:func:`update_recipe`), no weight average: over a few dozen steps an average would
stay at the old weights). The custom digits get stronger augmentation than MNIST
(``CUSTOM_AUGMENT``), and the MNIST digits follow the start model's own outputs (``KEEP_WEIGHT``).
Then :func:`mnistp4.stages.quantize.qat.finetune` (one epoch on the same mix, partly distilled from the
fine-tuned float model (``QAT_DISTILL``), ranges from the calibration images ``quantize`` will use)
and :func:`mnistp4.stages.quantize.quantize.quantize_run` (Int8 only, interpreter checked against
esp-ppq and the file's test values).

Digits whose source starts with ``try:`` (saved from the browser) always train; the other custom
writers are split by source as in ``train``, and the held-out ones measure the update.

NEW (default ``RUN_DIR-update-<n>``) is a run dir like ``qat``'s, plus ``update.json``: before ->
after on the MNIST test set, the held-out custom writers and the new digits, all measured on the
Int8 files with the integer interpreter, and ``deployable``: false when MNIST dropped by more than
``MAX_MNIST_DROP`` (unless ``--force``). :func:`newest_verified_model` (``deploy`` without
arguments, ``/try``) skips runs that are not deployable.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from mnistp4 import hookimpl
from mnistp4.api import pass_context
from mnistp4.errors import InputError
from mnistp4.io import atomic_path, write_json
from mnistp4.locks import only_lock_files, run_dir_lock

log = logging.getLogger(__name__)

#: MNIST train digits in the update's pass (a new random slice each time)
UPDATE_MNIST = 6000
#: share of custom digits in that pass (oversampled up to it, never below once each); 0.25 taught a
#: writer group more but lost 0.11-0.17 pp of MNIST in 6 of 12 updates (refused); 0.1 kept MNIST within
#: 0.04 pp on four groups with K = 50 (docs/training.md, bench_update)
CUSTOM_SHARE = 0.1
#: peak learning rate of the pass
UPDATE_LR = 1e-4
#: passes over the MNIST slice in the float fine-tune
UPDATE_PASSES = 1.0
#: weight of the custom digits' loss next to the MNIST digits' loss (per batch, both means)
CUSTOM_LOSS_WEIGHT = 1.0
#: augmentations of the custom digits only (the MNIST digits get the run's own), applied in turn:
#: a few dozen corrections seen a dozen times each need more variety than MNIST's rotate-shift
CUSTOM_AUGMENT = ("rotate-shift", "scale", "stroke", "elastic")
#: share of the MNIST digits' loss that follows the start model's outputs (distillation at temperature
#: 2) instead of their labels: 1.0, MNIST only keeps what the start model did, the corrections teach
KEEP_WEIGHT = 1.0
#: share of the chip-rounding fine-tune's loss that follows the fine-tuned float model's outputs (so
#: the rounding keeps what the corrections taught); with 0.25 and the two above, groups c0 / c1 of
#: bench_update reached 98.67 / 98.00 % with MNIST 99.55 / 99.56 % (docs/training.md)
QAT_DISTILL = 0.25
#: refuse to make the update deployable when the Int8 MNIST accuracy drops by more than this
MAX_MNIST_DROP = 0.001
TRY_PREFIX = "try:"
UPDATE_FILE = "update.json"


def update_recipe(lr: float = UPDATE_LR):
    from mnistp4.stages.training.recipes import FAST

    # peak 1e-4: on a 2-epoch p4net with 50 Semeion corrections, 5e-4 / 2e-4 / 1e-4 gave the group's
    # other digits 90.7 -> 97.3 / 97.3 / 96.7 % and MNIST -0.28 / -0.23 / -0.11 pp (docs/training.md)
    return replace(
        FAST,
        name="update",
        epochs=1,
        lr=lr,
        warmup=0.3,
        ema=0.0,
        description=f"one pass, AdamW one-cycle to {lr:g}, no weight average",
    )


# -- which model is deployable -------------------------------------------------------------------
def verified_model(run_dir: Path) -> Path | None:
    """The run's Int8 ``.espdl`` when ``quant.json`` says the interpreter matched esp-ppq on every test
    image and the file's own test values, and the run is not an update refused for its MNIST drop."""
    run_dir = Path(run_dir)
    try:
        q = json.loads((run_dir / "quant.json").read_text())
        upd = json.loads((run_dir / UPDATE_FILE).read_text()) if (run_dir / UPDATE_FILE).is_file() else {}
    except (OSError, ValueError):
        return None
    row = q.get("int8") or {}
    v, tv = row.get("verification") or {}, row.get("test_values") or {}
    path = run_dir / Path(str(row.get("file", ""))).name
    if not v or v.get("mismatched_images") != 0 or tv.get("passed") is False or not path.is_file():
        return None
    if upd and not upd.get("deployable", False):
        return None
    return path


def newest_verified_model(runs_dir: Path) -> Path | None:
    """The verified Int8 file of the run in ``runs_dir`` quantized last (see :func:`verified_model`)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    found = []
    for run in runs_dir.iterdir():
        model = verified_model(run) if run.is_dir() else None
        if model is not None:
            found.append(((run / "quant.json").stat().st_mtime_ns, model))
    return max(found)[1] if found else None


@contextlib.contextmanager
def claimed_out(run_dir: Path, out: Path | None) -> Iterator[Path]:
    """The update's new run dir, held by its lock for the update: ``out``, or ``RUN_DIR-update-<n>``
    with the first n whose folder this call creates (another update, in another process or the web
    page's thread, has created its own; an update of an update counts on)."""
    if out is None:
        run_dir = Path(run_dir)
        base = re.sub(r"-update-\d+$", "", run_dir.name)
        n = 1
        while True:
            out = run_dir.parent / f"{base}-update-{n}"
            try:
                out.mkdir(parents=True)  # exclusive: of two updates at once, one creates it
                break
            except FileExistsError:
                n += 1
    with run_dir_lock(out):
        yield Path(out)


@contextlib.contextmanager
def frozen_batchnorm(net):
    """BatchNorm layers stay in eval mode while ``net`` trains: normalized by their running statistics,
    which do not move. A short fine-tune must not re-estimate them from a few dozen batches, and a
    ``qat`` run's BatchNorm is the identity carrying the folded bias (batch statistics would replace
    it by a different function)."""
    from torch import nn

    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.train = functools.partial(_stay_in_eval, m)
    try:
        yield
    finally:
        for m in bns:
            m.__dict__.pop("train", None)
            m.eval()


def _stay_in_eval(module, mode: bool = True):
    from torch import nn

    return nn.Module.train(module, False)


def quantized_mnist(run_dir: Path, model_path: Path) -> float | None:
    """The Int8 MNIST test accuracy ``quantize`` measured on this very file (quant.json), if it did."""
    try:
        row = json.loads((Path(run_dir) / "quant.json").read_text()).get("int8") or {}
    except (OSError, ValueError):
        return None
    same = Path(str(row.get("file", ""))).name == Path(model_path).name
    return (row.get("mnist") or {}).get("accuracy") if same else None


# -- data -------------------------------------------------------------------------------------------
def split_custom(digits, seed: int = 0):
    """``(train, held_out, new)``: ``try:`` digits always train (and are the "new" ones); the other
    writers are split by source as ``train`` does."""
    from mnistp4.digitsets import concat, split_by_source, subset

    is_new = np.array([str(s).startswith(TRY_PREFIX) for s in (digits.sources or [])], bool)
    if len(is_new) != len(digits):
        is_new = np.zeros(len(digits), bool)
    new, others = subset(digits, is_new, "new"), subset(digits, ~is_new, "others")
    train, held = split_by_source(others, seed=seed)
    return concat([train, new], "custom-train"), held, new


def int8_accuracy(model_path: Path, images: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy of the Int8 file in integer arithmetic (None without digits)."""
    from mnistp4.stages.quantize.espdl_quantize import accuracy
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.interpreter import predict_ints

    return accuracy(predict_ints(read_espdl(model_path), images), labels) if len(labels) else None


def finetune_float(
    net,
    m_images: np.ndarray,
    m_labels: np.ndarray,
    c_images: np.ndarray,
    c_labels: np.ndarray,
    *,
    recipe,
    custom_share: float,
    passes: float,
    custom_weight: float,
    mnist_augmentations,
    custom_augmentations,
    keep_weight: float = 0.0,
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """Fine-tune ``net`` in place. Every batch of ``recipe.batch_size`` holds about ``custom_share``
    custom digits (drawn in shuffled rounds, so each is seen equally often) and MNIST digits (the
    slice in shuffled passes; ``passes`` of them in all). The MNIST part gets ``mnist_augmentations``,
    the custom part ``custom_augmentations``; the loss is the MNIST part's mean cross-entropy plus
    ``custom_weight`` times the custom part's, plus ``keep_weight`` times the distance of the MNIST
    part's outputs from the start model's (temperature 2). Returns ``{"steps", "seconds"}``."""
    import copy

    import torch
    import torch.nn.functional as F

    from mnistp4.stages.training.loop import augmented_batch, auto_threads, distillation_loss, soft_targets

    torch.set_num_threads(threads or auto_threads())
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    batch = recipe.batch_size
    n_c = len(c_labels)
    per_custom = min(batch - 1, max(1, round(custom_share * batch))) if n_c else 0
    per_mnist = batch - per_custom
    steps = max(1, round(passes * len(m_labels) / per_mnist))
    teacher = copy.deepcopy(net).eval() if keep_weight > 0 else None
    optimizer = recipe.make_optimizer(net.parameters())
    scheduler = recipe.make_scheduler(optimizer, steps, 1)
    m_x = torch.from_numpy(np.ascontiguousarray(m_images))
    m_y = torch.from_numpy(np.asarray(m_labels, np.int64))
    c_x = torch.from_numpy(np.ascontiguousarray(c_images))
    c_y = torch.from_numpy(np.asarray(c_labels, np.int64))

    def stream(n: int, take: int):
        order = torch.randperm(n, generator=gen)
        pos = 0
        while True:
            while pos + take > len(order):
                order = torch.cat([order[pos:], torch.randperm(n, generator=gen)])
                pos = 0
            yield order[pos : pos + take]
            pos += take

    m_stream = stream(len(m_labels), per_mnist)
    c_stream = stream(n_c, per_custom) if n_c else None
    net.train()
    for _ in range(steps):
        mi = next(m_stream)
        xm = augmented_batch(m_x[mi], mnist_augmentations, gen)
        if c_stream is not None:
            ci = next(c_stream)
            xc = augmented_batch(c_x[ci], custom_augmentations, gen)
            out = net(torch.cat([xm, xc]))
            om, oc = out[: len(mi)], out[len(mi) :]
        else:
            om, oc = net(xm), None
        loss = F.cross_entropy(om, m_y[mi], label_smoothing=recipe.label_smoothing)
        if teacher is not None:
            soft = soft_targets([teacher], xm, 2.0)
            loss = distillation_loss(om, soft, loss, weight=keep_weight, temperature=2.0)
        if oc is not None:
            loss = loss + custom_weight * F.cross_entropy(oc, c_y[ci], label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    net.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 2)}


# -- the command's work -----------------------------------------------------------------------------
def update_run(app, run_dir: Path, out: Path | None = None, **kwargs) -> dict:
    """Fine-tune, QAT, quantize and verify ``run_dir`` into ``out`` (arguments: :func:`_update_run`);
    returns the report (update.json). A failure removes the half-written ``out``: an update dir is
    complete (update.json) or absent."""
    existed = out is not None and Path(out).exists()
    with claimed_out(Path(run_dir), Path(out) if out else None) as out:
        try:
            return _update_run(app, Path(run_dir), out, **kwargs)
        except BaseException:
            if not existed and out.is_dir():
                shutil.rmtree(out, ignore_errors=True)
            raise


def _update_run(
    app,
    run_dir: Path,
    out: Path,
    *,
    data_dir: Path | None = None,
    force: bool = False,
    seed: int = 0,
    threads: int | None = None,
    mnist_digits: int = UPDATE_MNIST,
    lr: float = UPDATE_LR,
    custom_share: float = CUSTOM_SHARE,
    passes: float = UPDATE_PASSES,
    custom_weight: float = CUSTOM_LOSS_WEIGHT,
    custom_augment: tuple[str, ...] | list[str] = CUSTOM_AUGMENT,
    keep_weight: float = KEEP_WEIGHT,
    qat_distill: float = QAT_DISTILL,
    on_progress=None,
    quiet: bool = False,
) -> dict:
    """``on_progress(stage, fraction, message)`` hears about each stage (the browser's progress bar)."""
    import torch

    from mnistp4.stages.data.custom_digits import load_digit_folder
    from mnistp4.stages.deploy.common import resolve_model
    from mnistp4.stages.models.common import load_run
    from mnistp4.stages.models.export import export_onnx
    from mnistp4.stages.quantize.calib_images import calibration_set, custom_entries, custom_split
    from mnistp4.stages.quantize.qat import QatSettings, finetune
    from mnistp4.stages.quantize.quantize import quantize_run
    from mnistp4.stages.training.loop import evaluate
    from mnistp4.stages.training.run import export_check_digits, resolve_augmentations

    started = time.perf_counter()
    cpu0 = time.process_time()
    timings: dict[str, float] = {}

    def stage(name: str, fraction: float, message: str) -> None:
        timings[name] = round(time.perf_counter() - started, 2)
        log.info("update: %s", message)
        if on_progress:
            on_progress(name, fraction, message)
        if not quiet:
            app.console.print(f"[{timings[name]:5.1f} s] {message}", highlight=False)

    if not 0 < custom_share < 1 or lr <= 0:
        raise InputError(f"--custom-share must be between 0 and 1 and --lr above 0, got {custom_share} and {lr}")
    if out.resolve() == run_dir.resolve():
        raise InputError(f"{out}: the update needs its own run dir (the source run is kept)")
    if out.exists() and not only_lock_files(out):
        raise InputError(f"{out} already exists; pass another --out")
    before_model = verified_model(run_dir) or resolve_model(run_dir, 8)
    net, cfg = load_run(run_dir, app)
    data_dir = Path(data_dir) if data_dir else app.config.path("data_dir")
    digits = load_digit_folder(data_dir)
    if not len(digits):
        raise InputError(
            f"{data_dir} has no usable labelled digits: nothing to update with (save some on /try "
            f"or label some on /review)"
        )
    ctrain, cheld, new = split_custom(digits, seed)
    stage(
        "data",
        0.05,
        f"{run_dir} + {len(ctrain)} custom training digits ({len(new)} from /try), "
        f"{len(cheld)} held out, from {data_dir}",
    )

    mnist = app.get("dataset_sources", "mnist")
    mtrain, mtest = mnist(app, "train"), mnist(app, "test")
    rng = np.random.default_rng(int(time.time_ns()) % 2**32 if seed < 0 else seed)
    pick = rng.choice(len(mtrain), size=min(mnist_digits, len(mtrain)), replace=False)
    m_images, m_labels = mtrain.images[pick], mtrain.labels[pick]
    weight = max(1, round(custom_share * len(pick) / ((1 - custom_share) * len(ctrain)))) if len(ctrain) else 1
    weighting = app.get("weightings", "oversample")
    _, augmentations = resolve_augmentations(app, cfg.get("augment"))

    # 1. float fine-tune: MNIST batches with the run's augmentation, custom digits in every batch
    custom_aug = [(n, app.get("augmentations", n)) for n in custom_augment]
    out.mkdir(parents=True, exist_ok=True)
    with frozen_batchnorm(net):
        ft = finetune_float(
            net,
            m_images,
            m_labels,
            ctrain.images,
            ctrain.labels,
            recipe=update_recipe(lr),
            custom_share=custom_share,
            passes=passes,
            custom_weight=custom_weight,
            mnist_augmentations=augmentations,
            custom_augmentations=custom_aug,
            keep_weight=keep_weight,
            seed=max(seed, 0),
            threads=threads,
        )
    float_after = evaluate(net, mtest.images, mtest.labels)["accuracy"]
    stage("finetune", 0.35, f"fine-tuned ({ft['steps']} steps): float MNIST {100 * float_after:.2f}%")

    # 2. chip-rounding fine-tune, ranges from the images `quantize` will calibrate on
    entries = [e for e in custom_entries(app, cfg) if Path(str(e)).resolve() != data_dir.resolve()]
    new_cfg = {k: v for k, v in cfg.items() if k not in ("qat", "update")} | {"custom": [*entries, str(data_dir)]}
    calib_train, _ = custom_split(app, custom_entries(app, new_cfg))
    calib = calibration_set(app, int(app.config["calib"]), custom_train=calib_train)
    images = np.concatenate([m_images, ctrain.images])
    labels = np.concatenate([m_labels, ctrain.labels]).astype(np.int64)

    def epoch_order(generator):
        return weighting(len(m_images), len(ctrain), weight, generator)[0]

    qset = QatSettings(epochs=1, lr=2e-5, seed=max(seed, 0), threads=threads, distill=qat_distill)
    qat, history = finetune(
        net, images, labels, epoch_order, mtest.images, mtest.labels, calib.images, qset, augmentations
    )
    tuned = qat.to_original()
    with atomic_path(out / "model.pt") as tmp:
        torch.save(tuned.state_dict(), tmp)
    new_cfg["qat"] = {
        "from": str(run_dir),
        "epochs": 1,
        "lr": qset.lr,
        "seed": qset.seed,
        "distill": qat_distill,
        "learn_clipping": False,
        "clip": qat.clip_bounds(),
        "activation_exponents": history[-1]["exponents"],
    }
    new_cfg["update"] = {
        "from": str(run_dir),
        "data": str(data_dir),
        "mnist_digits": len(pick),
        "weight": weight,
        "custom_share": custom_share,
        "passes": passes,
        "steps": ft["steps"],
        "custom_loss_weight": custom_weight,
        "custom_augment": list(custom_augment),
        "keep_weight": keep_weight,
        "recipe": update_recipe(lr).as_dict(),
    }
    write_json(out / "config.json", new_cfg)
    export_onnx(tuned, out / "model.onnx", export_check_digits(mtest.images, cheld.images))
    stage(
        "qat",
        0.6,
        f"chip-rounding fine-tune: fake-quantized MNIST {100 * history[-1]['fake_quant_accuracy']:.2f}%; quantizing",
    )

    # 3. Int8 file, verified as `quantize` does
    quant = quantize_run(
        app,
        out,
        bits=8,
        target=app.config["target"],
        calib=int(app.config["calib"]),
        widths=(8,),
        verify=True,
        quiet=True,
    )
    after_model = verified_model(out)
    row = quant["int8"]
    verified = after_model is not None
    stage(
        "quantize",
        0.85,
        "Int8 file verified (interpreter = esp-ppq, test values)"
        if verified
        else f"Int8 file NOT verified: {row.get('verification')} {row.get('test_values')}",
    )
    seconds_to_file = round(time.perf_counter() - started, 2)

    # 4. before -> after on the Int8 files
    after_path = out / Path(row["file"]).name
    report = {
        "from": str(run_dir),
        "run_dir": str(out),
        "data_dir": str(data_dir),
        "before_model": str(before_model),
        "after_model": str(after_path),
        "verified": verified,
        "digits": {
            "custom_train": len(ctrain),
            "new": len(new),
            "held_out": len(cheld),
            "mnist_in_pass": len(pick),
            "weight": weight,
        },
    }
    sets = {"held_out": (cheld.images, cheld.labels), "new": (new.images, new.labels)}
    for side, model_path in (("before", before_model), ("after", after_path)):
        known = quantized_mnist(model_path.parent, model_path)  # measured by quantize on the same file
        report[side] = {
            "mnist": known if known is not None else int8_accuracy(model_path, mtest.images, mtest.labels),
            **{k: int8_accuracy(model_path, *v) for k, v in sets.items()},
        }
    drop = report["before"]["mnist"] - report["after"]["mnist"]
    report["mnist_drop_pp"] = round(100 * drop, 3)
    report["deployable"] = bool(verified and (drop <= MAX_MNIST_DROP + 1e-12 or force))
    report["forced"] = bool(force and drop > MAX_MNIST_DROP + 1e-12)
    report["seconds_to_verified_file"] = seconds_to_file
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["cpu_seconds"] = round(time.process_time() - cpu0, 2)
    report["stages"] = timings
    write_json(out / UPDATE_FILE, report)
    for name, kind in (("model.pt", "model.pt"), ("model.onnx", "onnx"), (UPDATE_FILE, "metrics")):
        app.emit("on_artifact_written", path=out / name, kind=kind)
    stage(
        "done",
        1.0,
        "deployable"
        if report["deployable"]
        else f"not deployable: MNIST dropped {report['mnist_drop_pp']:.2f} pp (limit {100 * MAX_MNIST_DROP:.1f}; "
        f"--force overrides)"
        if verified
        else "not deployable: the Int8 file is not verified",
    )
    return report


def print_report(app, r: dict) -> None:
    def pct(v):
        return "  -   " if v is None else f"{100 * v:6.2f}%"

    c = app.console
    c.print(f"{'':22} {'before':>8}  {'after':>8}")
    for key, name in (
        ("mnist", "MNIST test"),
        ("held_out", f"held-out writers ({r['digits']['held_out']})"),
        ("new", f"new digits ({r['digits']['new']})"),
    ):
        c.print(f"{name:22} {pct(r['before'][key]):>8}  {pct(r['after'][key]):>8}", highlight=False)
    c.print(
        f"{r['run_dir']}: verified Int8 file in {r['seconds_to_verified_file']:.1f} s ({r['cpu_seconds']:.0f} CPU s)",
        highlight=False,
    )
    if r["deployable"]:
        c.print(
            "[green]deployable[/]: `mnistp4 deploy` (no argument) now takes it"
            + (" (--force: MNIST dropped)" if r["forced"] else "")
        )
    else:
        c.print(
            f"[yellow]not deployable[/]: MNIST dropped {r['mnist_drop_pp']:.2f} pp (limit "
            f"{100 * MAX_MNIST_DROP:.1f} pp); the previous model stays; --force overrides"
        )


#: the schedule's knobs ``--tune KEY=VALUE`` sets (bench/bench_update.py), with their types
TUNE_KEYS = {
    "passes": float,
    "custom_weight": float,
    "keep_weight": float,
    "qat_distill": float,
    "custom_augment": str,
}


def parse_tune(pairs) -> dict:
    """``["passes=2", "custom_augment=rotate-shift,stroke"]`` -> keyword arguments of the update
    (``custom_augment``: a comma list, empty for none)."""
    kwargs: dict = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or key not in TUNE_KEYS:
            raise InputError(f"--tune {pair}: expected KEY=VALUE with KEY one of {', '.join(TUNE_KEYS)}")
        kwargs[key] = tuple(v for v in value.split(",") if v) if key == "custom_augment" else TUNE_KEYS[key](value)
    return kwargs


@hookimpl
def register_commands(cli):
    from mnistp4.cli import print_json

    @cli.command(
        "update",
        help="Fine-tune a finished run on MNIST plus every custom digit of the data dir "
        "(those saved on /try included), then chip-rounding fine-tuning, Int8 "
        "quantization and verification, into NEW (default RUN_DIR-update-<n>). "
        "Prints before -> after; refuses to make NEW deployable when MNIST drops "
        "by more than 0.1 pp.",
    )
    @click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="new run dir")
    @click.option(
        "--data",
        "data_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="data dir with the custom digits (default: config data_dir)",
    )
    @click.option("--force", is_flag=True, help="deployable even when MNIST drops by more than 0.1 pp")
    @click.option("--seed", type=int, default=0, show_default=True, help="-1: a new MNIST slice each time")
    @click.option("--threads", type=click.IntRange(1), default=None)
    @click.option(
        "--lr",
        type=click.FloatRange(min=0, min_open=True),
        default=UPDATE_LR,
        show_default=True,
        help="peak learning rate of the fine-tuning pass",
    )
    @click.option(
        "--custom-share",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=CUSTOM_SHARE,
        show_default=True,
        help="share of custom digits in the pass (oversampled up to it)",
    )
    @click.option("--json", "as_json", is_flag=True)
    @click.option("--tune", "tune", multiple=True, hidden=True, help="KEY=VALUE of the schedule (benchmarks)")
    @pass_context
    def update_cmd(app, run_dir, out, data_dir, force, seed, threads, lr, custom_share, as_json, tune):
        report = update_run(
            app,
            run_dir,
            out,
            data_dir=data_dir,
            force=force,
            seed=seed,
            threads=threads,
            lr=lr,
            custom_share=custom_share,
            quiet=as_json,
            **parse_tune(tune),
        )
        if as_json:
            print_json(report)
        else:
            print_report(app, report)
