"""Recipe exploration: one short MNIST-only run of a model layout at given widths with a one-cycle
AdamW schedule, the test accuracy of the raw weights and of their moving average every half epoch.
Produced the logs in ``bench/results/recipe_explore/2026-11-23-b595f45/`` (their ``RESULT`` lines hold the
arguments); a new run writes ``log.txt`` and ``meta.json`` into
``bench/results/recipe_explore/<date>-<commit>-ARCH-W/``.

    MNISTP4_MNIST_DIR=... python bench/recipe_explore.py --arch p4net-plus --w 16,32,64 \
        --epochs 12 --lr 4e-3 --pct 0.1 --ema 0.998

``--arch p4net`` / ``p4net-plus`` build ``plugins/models/p4net.py`` / ``plugins/models/p4net_plus.py`` at
``--w``; ``--plain-ema`` averages without the decay warm-up of ``Recipe.make_ema`` (logs e1-e3).
``bench/recipe_sweep.py`` compares registered recipes through the real training loop instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import benchmeta
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["p4net", "p4net-plus"], default="p4net-plus")
    ap.add_argument("--w", default="16,32,64", help="channel widths")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--lr", type=float, default=4e-3, help="one-cycle peak")
    ap.add_argument("--pct", type=float, default=0.1, help="one-cycle warm-up share")
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--plain-ema", action="store_true")
    ap.add_argument("--ls", type=float, default=0.05, help="label smoothing")
    ap.add_argument("--wd", type=float, default=1e-2)
    ap.add_argument("--drop", type=float, default=0.1)
    ap.add_argument("--evals", type=int, default=2, help="test evaluations per epoch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out_dir = benchmeta.start("recipe_explore", tag=f"{a.arch}-{a.w.replace(',', '-')}")
    benchmeta.tee_stdout(out_dir, "log.txt")

    import torch
    import torch.nn.functional as F

    from mnistp4.app import create_app
    from mnistp4.stages.models.common import MEAN, STD, count_macs, count_params, normalize_uint8
    from mnistp4.stages.models.p4net import P4Net
    from mnistp4.stages.models.p4net_plus import P4NetPlus
    from mnistp4.stages.training.augment import rotate_shift
    from mnistp4.stages.training.loop import Recipe

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    app = create_app(root=REPO)
    src = app.get("dataset_sources", "mnist")
    train, test = src(app, "train"), src(app, "test")
    x_all = torch.from_numpy(np.array(train.images, np.uint8))
    y_all = torch.from_numpy(train.labels.astype(np.int64))
    x_test, y_test = normalize_uint8(test.images), torch.from_numpy(test.labels.astype(np.int64))
    widths = tuple(int(v) for v in a.w.split(","))
    model = (P4Net if a.arch == "p4net" else P4NetPlus)(widths, a.drop)
    print("params", count_params(model), "macs", count_macs(model), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    steps = -(-len(y_all) // a.bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=a.lr,
        epochs=a.epochs,
        steps_per_epoch=steps,
        pct_start=a.pct,
        div_factor=20.0,
        final_div_factor=200.0,
    )
    if a.plain_ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(a.ema), use_buffers=True)
    else:
        ema = Recipe("explore", a.epochs, a.bs, ema=a.ema).make_ema(model)

    def accuracy(net) -> float:
        net.eval()
        with torch.no_grad():
            correct = sum(
                int((net(x_test[i : i + 1000]).argmax(1) == y_test[i : i + 1000]).sum())
                for i in range(0, len(y_test), 1000)
            )
        return correct / len(y_test)

    gen = torch.Generator().manual_seed(a.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    first, best, last = None, 0.0, None
    eval_at = {int(steps * k / a.evals) for k in range(1, a.evals + 1)}
    for epoch in range(a.epochs):
        order = torch.randperm(len(y_all), generator=gen)
        model.train()
        for s in range(steps):
            idx = order[s * a.bs : (s + 1) * a.bs]
            x = rotate_shift(x_all[idx].float().div_(255.0).unsqueeze(1), gen).sub_(MEAN).div_(STD)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y_all[idx], label_smoothing=a.ls).backward()
            opt.step()
            sched.step()
            ema.update_parameters(model)
            if s + 1 in eval_at:
                raw, avg = accuracy(model), accuracy(ema.module)
                model.train()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                at = epoch + (s + 1) / steps
                best = max(best, raw, avg)
                if first is None and max(raw, avg) >= 0.994:
                    first = (at, round(wall, 1), round(cpu, 1))
                last = (round(at, 2), raw, avg)
                print(f"ep {at:.2f} acc {raw:.4f} ema {avg:.4f} wall {wall:.0f} cpu {cpu:.0f}", flush=True)
    print("RESULT", json.dumps(vars(a)), "first99.4", first, "best", best, "final", last, flush=True)
    if last:  # the baseline, measured in the same run: the raw weights the average is taken of
        print(
            f"weight average vs raw weights at the end: {100 * (last[2] - last[1]):+.2f} pp, "
            f"errors {benchmeta.ratio(1 - last[2], 1 - last[1]) or 0:.2f}x the raw weights'",
            flush=True,
        )
    benchmeta.finish(out_dir, first_99_4=first, best=best, final=last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
