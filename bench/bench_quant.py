"""Int8 gap benchmark: every quantization recipe on trained models, accuracy measured on the
exported .espdl files by the host integer interpreter over the full MNIST test set.

    python bench/bench_quant.py runs/p4net-fast-s0 runs/seed-cnn-fast-s0 [--recipes a,b] [--calib 256]

For each model: the float ONNX accuracy (onnxruntime, the baseline measured in the same run),
the Int16 file, then one Int8 file per recipe with its drop in percentage points, the images whose
prediction changed, argmax ties of the integer logits, esp-ppq's per-layer noise:signal, and the
interpreter-vs-esp-ppq mismatch count, and the ratio of each file's test errors to the float model's.
Writes quant_gap.json, quant_gap.png, the console output and meta.json into
bench/results/bench_quant/<date>-<commit>[-<tag>]/ (see bench/benchmeta.py), or into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import benchmeta
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from mnistp4.io import write_json
    from mnistp4.stages.data.mnist_source import load_mnist
    from mnistp4.stages.quantize.espdl_quantize import RECIPES, accuracy, onnx_logits, quantize_onnx, verify_against_ppq
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.interpreter import Interpreter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="run dirs (with model.onnx) or .onnx files")
    ap.add_argument(
        "--quick-train",
        action="append",
        default=[],
        metavar="MODEL:EPOCHS",
        help="first train a registered model briefly on MNIST (see quick_train) into --work",
    )
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--target", default="esp32p4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", default="", help="results folder (default: bench/results/bench_quant/<date>-<commit>[-<tag>])"
    )
    ap.add_argument("--tag", default="", help="suffix of the results folder, e.g. the model's name")
    ap.add_argument("--work", default="", help="folder for the .espdl files (default: a temp folder)")
    ap.add_argument("--replot", default="", help="only redraw the picture from a quant_gap.json")
    args = ap.parse_args(argv)
    if args.replot:
        results = json.loads(Path(args.replot).read_text())
        _plot(results, Path(args.out or Path(args.replot).parent) / "quant_gap.png")
        return 0

    import tempfile

    import torch

    torch.set_num_threads(2)
    mnist_dir = os.environ.get("MNISTP4_MNIST_DIR", "")
    if not mnist_dir:
        ap.error("set MNISTP4_MNIST_DIR to the folder with the MNIST IDX files")
    if not args.models and not args.quick_train:
        ap.error("give run dirs / .onnx files, or --quick-train MODEL:EPOCHS")
    out_dir = Path(args.out) if args.out else benchmeta.start("bench_quant", tag=args.tag)
    out_dir.mkdir(parents=True, exist_ok=True)
    benchmeta.tee_stdout(out_dir)
    train, test = load_mnist(mnist_dir, "train"), load_mnist(mnist_dir, "test")
    calib = train.images[np.random.default_rng(args.seed).choice(len(train), args.calib, replace=False)]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-quant-"))
    for item in args.quick_train:
        name, _, epochs = item.partition(":")
        args.models.append(str(quick_train(name, int(epochs or 3), work / "runs" / name, train, test)))
    if not args.models:
        ap.error("give run dirs / .onnx files, or --quick-train MODEL:EPOCHS")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    results = {"calib": args.calib, "target": args.target, "test_images": int(len(test)), "models": {}}
    for src in args.models:
        src = Path(src)
        onnx_path = src / "model.onnx" if src.is_dir() else src
        name = src.name if src.is_dir() else src.stem
        fl = onnx_logits(onnx_path, test.images)
        acc_f = accuracy(fl, test.labels)
        print(f"\n== {name}: float {100 * acc_f:.2f}% ({onnx_path})", flush=True)
        rows = []
        for bits, recipe in [(16, "minmax"), *[(8, r) for r in recipes]]:
            t0 = time.perf_counter()
            out = work / name / f"{recipe}_int{bits}.espdl"
            res = quantize_onnx(onnx_path, out, bits=bits, target=args.target, calib_images=calib, recipe=recipe)
            model = read_espdl(out)
            it = Interpreter(model)
            v = verify_against_ppq(model, res.graph, test.images, interpreter=it)
            ints = v.pop("ints")
            v.pop("sim_ints")
            acc_q = accuracy(ints, test.labels)
            top = np.sort(ints, axis=1)
            row = {
                "bits": bits,
                "recipe": recipe,
                "accuracy": acc_q,
                "drop_pp": 100 * (acc_q - acc_f),
                "error_ratio_vs_float": benchmeta.ratio(1 - acc_q, 1 - acc_f),
                "changed_predictions": int((ints.argmax(1) != fl.argmax(1)).sum()),
                "argmax_ties": int((top[:, -1] == top[:, -2]).sum()),
                "input_exponent": model.input_exponent,
                "output_exponent": model.outputs[0].exponent,
                "file_bytes": model.file_bytes,
                "mismatched_vs_esp_ppq": v["mismatched_images"],
                "layerwise": res.layerwise,
                "graphwise": res.graphwise,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            rows.append(row)
            worst = max(res.layerwise.items(), key=lambda kv: kv[1], default=("-", 0.0))
            print(
                f"  Int{bits:<2} {recipe:14s} {100 * acc_q:6.2f}%  Δ {row['drop_pp']:+.2f} pp  "
                f"changed {row['changed_predictions']:3d}  ties {row['argmax_ties']:3d}  "
                f"in_exp {row['input_exponent']:3d}  worst layer {worst[0]} {100 * worst[1]:.3f}%  "
                f"≠esp-ppq {row['mismatched_vs_esp_ppq']}  errors {row['error_ratio_vs_float'] or 0:.2f}x float  "
                f"{row['seconds']:.0f}s",
                flush=True,
            )
        results["models"][name] = {"onnx": str(onnx_path), "float_accuracy": acc_f, "rows": rows}
    write_json(out_dir / "quant_gap.json", results)
    _plot(results, out_dir / "quant_gap.png")
    if (out_dir / "meta.json").exists():
        benchmeta.finish(out_dir)
    print(f"\nwrote {out_dir / 'quant_gap.json'} and {out_dir / 'quant_gap.png'}")
    return 0


def quick_train(model_name: str, epochs: int, out: Path, train, test, seed: int = 0) -> Path:
    """A registered model trained on MNIST only: AdamW one-cycle (peak 3e-3, weight decay 1e-2),
    batch 128, label smoothing 0.05, a random +-2 px shift per batch, seed 0; BN folded and exported
    with the project's ONNX exporter. A stand-in for `mnistp4 train` runs, for this benchmark only."""
    import torch
    import torch.nn.functional as F

    from mnistp4.app import create_app
    from mnistp4.stages.models.common import normalize_uint8
    from mnistp4.stages.models.export import export_onnx

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = create_app(load_entry_points=False).get("models", model_name).build()
    x, y = normalize_uint8(train.images), torch.from_numpy(np.array(train.labels))
    xt, yt = normalize_uint8(test.images), torch.from_numpy(np.array(test.labels))
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-2)
    per_epoch = len(x) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * per_epoch)
    for epoch in range(epochs):
        t0, perm = time.perf_counter(), torch.randperm(len(x))
        net.train()
        for i in range(per_epoch):
            idx = perm[i * 128 : (i + 1) * 128]
            dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
            loss = F.cross_entropy(net(torch.roll(x[idx], (dx, dy), (2, 3))), y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = torch.cat([net(xt[i : i + 1000]).argmax(1) for i in range(0, len(xt), 1000)]).eq(yt).float().mean()
        print(
            f"quick-train {model_name} epoch {epoch + 1}/{epochs}: {100 * float(acc):.2f}% "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(net, out / "model.onnx", test.images[:32])
    return out


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnistp4.io import atomic_path

    models = list(results["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, name in zip(axes[0], models):
        rows = results["models"][name]["rows"]
        labels = [f"Int{r['bits']} {r['recipe']}" if r["bits"] == 16 else r["recipe"] for r in rows]
        drops = [r["drop_pp"] for r in rows]
        colors = ["tab:green" if d >= -0.05 else "tab:orange" if d >= -0.2 else "tab:red" for d in drops]
        lo = -0.3
        ax.barh(labels, [max(d, lo) for d in drops], color=colors)
        for y, (d, r) in enumerate(zip(drops, rows)):
            note = f"{d:+.2f} pp, {r['changed_predictions']} changed" + (" (off scale)" if d < lo else "")
            ax.text(max(d, lo) + 0.005 if d >= 0 else 0.005, y, note, va="center", fontsize=8)
        ax.set_xlim(lo, 0.25)
        ax.axvline(-0.05, color="k", ls="--", lw=1, label="goal: drop ≤ 0.05 pp")
        ax.set_title(f"{name}: float {100 * results['models'][name]['float_accuracy']:.2f}%")
        ax.set_xlabel("accuracy change vs float, pp (MNIST test, on the .espdl)")
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
