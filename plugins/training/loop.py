"""The training loop: recipes, the two data pipelines, per-epoch evaluation, checkpoints and resume.

Two data pipelines, chosen by the recipe:

* ``batch`` (ours): the whole training set stays a uint8 tensor; each batch is gathered by index,
  scaled to [0, 1], augmented as one tensor (``affine_grid``/``grid_sample``), normalized.
* ``per-sample`` (the article's, as written): a ``Dataset`` that turns each digit into a PIL
  image, rotates and shifts it on its own (nearest neighbour, integer shift like torchvision's
  ``RandomAffine``), converts it to a tensor and normalizes it; a ``DataLoader`` collates batches.

Training runs on the GPU when torch sees one (the batch pipeline then keeps the whole uint8 set and
does the augmentation there too), else on the CPU.

Every epoch draws its shuffling, augmentation and dropout from a generator seeded with
``(seed, epoch)``, so a run resumed after epoch k continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistp4.io import atomic_path
from mnistp4.records import Recipe  # noqa: F401 - the contract type, re-exported
from mnistp4.stages.models.common import MEAN, STD

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
THRESHOLDS = (0.990, 0.994)


@dataclass
class TrainData:
    """MNIST train + custom train digits (uint8), the test set and the custom held-out digits."""

    mnist_images: np.ndarray
    mnist_labels: np.ndarray
    custom_images: np.ndarray
    custom_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    held_images: np.ndarray = field(default_factory=lambda: np.zeros((0, 28, 28), np.uint8))
    held_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class TrainSettings:
    epochs: int
    seed: int = 0
    weight: int = 20
    weighting: Callable | None = None  # see plugins/training/weighting.py
    augmentations: list = field(default_factory=list)  # [(name, fn)]
    custom_augmentations: list = field(default_factory=list)  # [(name, fn)]: the custom digits only, after those
    stop_at: float | None = None  # stop once test accuracy reaches this (benchmarks)
    max_seconds: float | None = None  # stop after the epoch that passes this time (benchmarks)
    threads: int | None = None  # None: auto_threads()
    teachers: list = field(default_factory=list)  # trained modules whose averaged outputs are distilled


#: the kernel's count of running tasks (Linux); elsewhere the 1-minute load average is used
LOADAVG = Path("/proc/loadavg")


def other_runnable(samples: int = 5) -> float:
    """How many other tasks want a CPU right now: the median of a few looks at the running count in
    ``/proc/loadavg`` (minus this process), or the 1-minute load average where that file is missing.
    The load average lags by a minute, so right after another job ends it still reads "busy"."""
    import os

    looks = []
    for _ in range(samples):
        try:
            running = int(LOADAVG.read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            try:
                return os.getloadavg()[0]
            except (OSError, AttributeError):  # AttributeError: no load average on Windows
                return 0.0
        looks.append(max(running - 1, 0))
        time.sleep(0.02)
    return float(sorted(looks)[len(looks) // 2])


def auto_threads(limit: int = 2) -> int:
    """One thread per core no other task is using, at least 1 and at most ``limit``. Oversubscribing
    hurts badly: when the cores are already taken, torch's threads wait for each other and one
    epoch took 15x longer with 2 threads than with 1 (`bench/bench_train.py --throughput` at load 12
    on 2 cores); two trainings started together with 2 threads each ran ~6x slower than with 1."""
    import os

    cores = os.cpu_count() or 1
    free = cores - other_runnable()
    return int(max(1, min(limit, cores, free)))


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**62)


def normalized(images_uint8):
    """uint8 tensor (N, 28, 28) -> normalized float (N, 1, 28, 28)."""
    return ((images_uint8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def memory_layout(model, device):
    """The memory format the training batches take: ``channels_last`` (pixels with their channels
    side by side) where ``model`` runs with it, which trains p4net-plus about 1.3x as fast on this
    project's CPUs (``bench/bench_train_layout.py``); else the usual contiguous one. The model's
    weights are converted in place. A model whose forward needs contiguous maps (a plugin's
    ``x.view(n, -1)``, say) fails a probe of two blank digits and keeps them."""
    import torch

    if not any(p.dim() == 4 for p in model.parameters()):
        return torch.contiguous_format
    probe = torch.zeros(2, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(probe)
    except RuntimeError as e:
        log.info("model keeps contiguous maps (its forward needs them: %s)", e)
        model.to(memory_format=torch.contiguous_format)
        return torch.contiguous_format
    finally:
        model.train(was_training)
    return torch.channels_last


def evaluate(model, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> dict:
    """Mean cross-entropy, accuracy and predictions of ``model`` on uint8 digits."""
    import torch
    import torch.nn.functional as F

    model.eval()
    device = next(model.parameters()).device
    x_all = torch.from_numpy(np.array(images, np.uint8))  # a writable copy (sources may be read-only)
    y_all = torch.from_numpy(np.asarray(labels, np.int64))
    loss, preds = 0.0, []
    with torch.no_grad():
        for i in range(0, len(x_all), batch):
            out = model(normalized(x_all[i : i + batch].to(device)))
            loss += float(F.cross_entropy(out, y_all[i : i + batch].to(device), reduction="sum"))
            preds.append(out.argmax(1).cpu())
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)
    n = max(len(labels), 1)
    correct = int((pred == np.asarray(labels)).sum())
    return {
        "loss": loss / n,
        "accuracy": correct / n if len(labels) else None,
        "correct": correct,
        "total": int(len(labels)),
        "preds": pred,
    }


class PerSampleDigits:
    """The article's Dataset: PIL image -> random rotation +-10 deg and integer shift +-10 %
    (nearest neighbour) -> ToTensor -> Normalize, one digit at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, order, augment: bool, seed: int):
        self.images, self.labels, self.order = images, labels, np.asarray(order)
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.order)

    def __getitem__(self, k):
        import torch
        from PIL import Image

        i = int(self.order[k])
        img = Image.fromarray(self.images[i])
        if self.augment:
            angle = float(self.rng.uniform(-10.0, 10.0))
            shift = (int(round(self.rng.uniform(-2.8, 2.8))), int(round(self.rng.uniform(-2.8, 2.8))))
            img = img.rotate(angle, resample=Image.NEAREST, translate=shift, fillcolor=0)
        x = torch.from_numpy(np.array(img, np.float32) / 255.0).unsqueeze(0)
        return (x - MEAN) / STD, int(self.labels[i])


def augmented_batch(x_uint8, augmentations, generator, custom_rows=None, custom_augmentations=()):
    """A uint8 (B, 28, 28) tensor -> the model input (B, 1, 28, 28): scaled, augmented, normalized.
    The rows where the boolean mask ``custom_rows`` is set also get ``custom_augmentations``, after
    the shared ones (none: the same random draws as without them)."""
    x = x_uint8.float().div_(255.0).unsqueeze(1)
    for _, aug in augmentations:
        x = aug(x, generator)
    if custom_augmentations and custom_rows is not None and bool(custom_rows.any()):
        xc = x[custom_rows]
        for _, aug in custom_augmentations:
            xc = aug(xc, generator)
        x[custom_rows] = xc
    return x.sub_(MEAN).div_(STD)


def _batches_batch_pipeline(
    images, labels, order, batch_size, augmentations, generator, device="cpu", custom_augmentations=(), n_mnist=0
):
    """Batches of the batch pipeline; rows ``>= n_mnist`` (the custom digits) also get
    ``custom_augmentations`` (:func:`augmented_batch`)."""
    import torch

    imgs = torch.from_numpy(images).to(device)  # the whole uint8 set lives where the model does
    labs = torch.from_numpy(labels).to(device)
    order = order.to(device)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        yield augmented_batch(imgs[idx], augmentations, generator, idx >= n_mnist, custom_augmentations), labs[idx]


def _batches_per_sample(images, labels, order, batch_size, augment, seed):
    import torch

    ds = PerSampleDigits(images, labels, order.numpy(), augment, seed)
    yield from torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)


def train(
    model,
    recipe: Recipe,
    data: TrainData,
    settings: TrainSettings,
    run_dir: Path,
    *,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    progress=None,
) -> dict:
    """Train ``model`` in place; keep the last epoch's weights in ``run_dir/model.pt``.

    The test set only watches: it is evaluated after every epoch for the curves, never used to pick
    the kept weights (picking the best of N noisy epochs on it would overstate the model by a few
    hundredths of a percent). The schedules anneal and the weight average smooths the end, so the
    last epoch is the model to keep.

    Returns ``{"history", "kept_epoch", "best_epoch", "best_accuracy", "train_seconds",
    "torch_threads", "composition", "time_to", "stopped_early"}`` (best_*: the highest test epoch,
    for information; torch_threads: the threads this call trained with).
    A checkpoint after every epoch makes ``resume=True`` continue at the last completed epoch.
    """
    import torch
    import torch.nn.functional as F

    threads = settings.threads or auto_threads()
    torch.set_num_threads(threads)
    log.info("training with %d torch thread(s)", threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    layout = memory_layout(model, device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    images = np.ascontiguousarray(np.concatenate([data.mnist_images, data.custom_images]))
    labels = np.concatenate([data.mnist_labels, data.custom_labels]).astype(np.int64)
    n_mnist, n_custom = len(data.mnist_labels), len(data.custom_labels)
    weighting = settings.weighting
    if weighting is None:
        from mnistp4.stages.training.weighting import oversample as weighting

    # the epoch length is fixed by the weighting, so the schedule knows its steps up front
    _, composition = weighting(n_mnist, n_custom, settings.weight, torch.Generator().manual_seed(0))
    steps = -(-composition["total"] // recipe.batch_size)
    optimizer = recipe.make_optimizer(model.parameters())
    scheduler = recipe.make_scheduler(optimizer, steps, settings.epochs)
    criterion_smoothing = recipe.label_smoothing
    ema = recipe.make_ema(model)
    kept = ema.module if ema is not None else model  # the weights evaluated, saved and exported
    teachers = [t.to(device).eval() for t in settings.teachers]

    state = {"epoch": 0, "history": [], "best_accuracy": -1.0, "best_epoch": 0, "elapsed": 0.0}
    ckpt_path = run_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        state = ckpt["state"]
        log.info("resuming %s after epoch %d", run_dir, state["epoch"])

    per_sample = recipe.loader == "per-sample"
    augment_names = [n for n, _ in settings.augmentations]
    if per_sample and settings.custom_augmentations:
        log.warning("recipe %s uses the per-sample pipeline, which has no custom-digit augmentation", recipe.name)
    if per_sample and any(n != "rotate-shift" for n in augment_names):
        log.warning(
            "recipe %s uses the article's per-sample pipeline, which applies only rotate-shift; ignoring %s",
            recipe.name,
            [n for n in augment_names if n != "rotate-shift"],
        )

    task = (
        progress.add_task("training", total=settings.epochs * steps, completed=state["epoch"] * steps)
        if progress
        else None
    )
    stopped_early = False
    start_epoch = state["epoch"]

    def save_kept():
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save(kept.state_dict(), tmp)

    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        if (
            settings.stop_at is not None
            and state["history"]
            and state["history"][-1]["test_accuracy"] >= settings.stop_at
        ):
            stopped_early = True
            break
        t0, c0 = time.perf_counter(), time.process_time()
        es = epoch_seed(settings.seed, epoch)
        gen = torch.Generator().manual_seed(es)
        torch.manual_seed(es)  # dropout
        order, _ = weighting(n_mnist, n_custom, settings.weight, gen)
        batches = (
            _batches_per_sample(images, labels, order, recipe.batch_size, "rotate-shift" in augment_names, es)
            if per_sample
            else _batches_batch_pipeline(
                images,
                labels,
                order,
                recipe.batch_size,
                settings.augmentations,
                gen,
                device,
                settings.custom_augmentations,
                n_mnist,
            )
        )
        model.train()
        total_loss, seen = 0.0, 0
        for x, y in batches:
            x, y = x.to(device, non_blocking=True, memory_format=layout), y.to(device, non_blocking=True)
            # the teachers' soft targets, once per batch (SAM evaluates the loss twice per group)
            soft = soft_targets(teachers, x, recipe.distill_temperature) if teachers else None

            def step_loss(xb=x, yb=y, sb=soft):
                out = model(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=criterion_smoothing)
                return (
                    distillation_loss(
                        out, sb, loss, weight=recipe.distill_weight, temperature=recipe.distill_temperature
                    )
                    if teachers
                    else loss
                )

            optimizer.zero_grad(set_to_none=True)
            if recipe.sam:  # one group of the whole batch is plain SAM
                loss = grouped_sharpness_aware_gradients(
                    model, step_loss, x, y, recipe.sam, recipe.sam_group or len(y), soft
                )
            else:
                loss = step_loss()
                loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            total_loss += float(loss.detach()) * len(y)
            seen += len(y)
            if task is not None:
                progress.advance(task)
        test = evaluate(kept, data.test_images, data.test_labels)
        held = evaluate(kept, data.held_images, data.held_labels) if len(data.held_labels) else None
        state["elapsed"] += time.perf_counter() - t0
        # CPU seconds of all threads: comparable between runs even on a busy, shared machine
        state["cpu"] = state.get("cpu", 0.0) + time.process_time() - c0
        row = {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "correct": test["correct"],
            "total": test["total"],
            "custom_accuracy": held["accuracy"] if held else None,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(state["elapsed"], 2),
            "cpu_seconds": round(state["cpu"], 2),
        }
        state["history"].append(row)
        state["epoch"] = epoch
        if test["accuracy"] > state["best_accuracy"]:
            state["best_accuracy"], state["best_epoch"] = test["accuracy"], epoch
        save_kept()
        with atomic_path(ckpt_path) as tmp:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "ema": ema.state_dict() if ema is not None else None,
                    "state": state,
                    "recipe": recipe.as_dict(),
                },
                tmp,
            )
        if on_epoch:
            on_epoch(row)
        if (settings.stop_at is not None and test["accuracy"] >= settings.stop_at) or (
            settings.max_seconds is not None and state["elapsed"] >= settings.max_seconds
        ):
            stopped_early = epoch < settings.epochs
            break

    if state["history"] and state["epoch"] == start_epoch:
        # resumed with nothing left to train: model.pt is still made from the checkpoint's weights,
        # so a run dir written under an older rule (best test epoch) ends up with its last epoch
        save_kept()
    return {
        "history": state["history"],
        "kept_epoch": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_accuracy": state["best_accuracy"],
        "train_seconds": round(state["elapsed"], 2),
        "torch_threads": threads,
        "composition": composition,
        "steps_per_epoch": steps,
        "time_to": time_to(state["history"]),
        "stopped_early": stopped_early,
    }


def sharpness_aware_gradients(model, step_loss, rho: float) -> None:
    """SAM (Foret et al. 2021): replace the gradients in ``.grad`` by those taken at the weights
    moved ``rho`` along the normalised gradient, the worst nearby point, so the optimizer steps
    towards a flat minimum. Costs a second forward/backward pass; BatchNorm's running statistics
    are left as the first pass set them."""
    import torch

    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        moves = [p.grad * (rho / (norm + 1e-12)) for p in params]
        for p, e in zip(params, moves):
            p.add_(e)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [
        (m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms
    ]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        for p in params:
            p.grad = None
        step_loss().backward()
    finally:
        for m, (momentum, tracked) in zip(norms, momenta):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
        with torch.no_grad():
            for p, e in zip(params, moves):
                p.sub_(e)


def grouped_sharpness_aware_gradients(model, step_loss, x, y, rho: float, group: int, soft=None):
    """SAM with "m-sharpness" (Foret et al. 2021, section 4.1): the batch is cut into sub-batches
    of ``group`` samples, each gets its own worst-case weight step and gradient there, and ``.grad``
    ends up as their size-weighted mean. Smaller groups measured flatter, better-generalising minima
    in the paper at the same compute. ``step_loss(x, y, soft)`` gets each group's share of ``soft``
    (teachers' targets, or None). Returns the batch loss at the unperturbed weights."""
    import torch

    total = len(y)
    summed: dict = {}
    batch_loss = 0.0
    softs = torch.split(soft, group) if soft is not None else [None] * -(-total // group)
    for xb, yb, sb in zip(torch.split(x, group), torch.split(y, group), softs):
        share = len(yb) / total
        model.zero_grad(set_to_none=True)
        loss = step_loss(xb, yb, sb)
        loss.backward()
        # called right away, inside this iteration: the closure sees this group's tensors
        sharpness_aware_gradients(model, lambda: step_loss(xb, yb, sb), rho)  # noqa: B023
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    acc = summed.get(p)
                    summed[p] = p.grad * share if acc is None else acc.add_(p.grad, alpha=share)
        batch_loss += float(loss.detach()) * share
    for p in model.parameters():
        p.grad = summed.get(p)
    return torch.tensor(batch_loss)


def soft_targets(teachers, x, temperature: float):
    """The teachers' probabilities at temperature T on batch ``x``, averaged. They see the same
    augmented batch as the student, so their targets say how much a rotated 7 looks like a 1,
    which one-hot labels cannot."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return torch.stack([F.softmax(teacher(x) / temperature, dim=1) for teacher in teachers]).mean(0)


def distillation_loss(student_logits, target, label_loss, *, weight: float, temperature: float):
    """Knowledge distillation: ``(1 - w) * label_loss + w * T^2 * KL(target || student)`` at
    temperature T, ``target`` from :func:`soft_targets`."""
    import torch.nn.functional as F

    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), target, reduction="batchmean") * (t * t)
    return (1.0 - weight) * label_loss + weight * soft


def time_to(history: list[dict], thresholds=THRESHOLDS) -> dict:
    """Seconds (training + per-epoch testing; wall and CPU) until the test accuracy first reached each
    threshold."""
    out = {}
    for t in thresholds:
        hit = next((h for h in history if h["test_accuracy"] >= t), None)
        out[f"{100 * t:.1f}"] = (
            {"seconds": hit["seconds"], "cpu_seconds": hit.get("cpu_seconds"), "epoch": hit["epoch"]} if hit else None
        )
    return out
