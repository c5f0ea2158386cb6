"""Firmware core on the host: parity with the Python normalizer + quantization, speed of the C core
against the Python normalizer (the baseline, measured in the same run), and how often the
scribble rule fires on real MNIST digits.

    python bench/firmware_core.py [--canvases 1000] [--seed 2024] [--mnist 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from plugins._fwcore import Core, build_core, parity  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canvases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--mnist", type=int, default=2000, help="MNIST test digits for the scribble rule (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        core = Core(build_core(tmp))
        report = {"parity_int8": parity(core, args.canvases, seed=args.seed, exponent=-6, bits=8),
                  "parity_int16": parity(core, max(1, args.canvases // 5), seed=args.seed + 1, exponent=-13,
                                         bits=16)}
        mnist_dir = os.environ.get("MNISTP4_MNIST_DIR")
        if args.mnist and mnist_dir:
            from plugins.mnist_source import load_mnist

            images = load_mnist(mnist_dir, "test").images[:args.mnist]
            states = [core.decide(core.normalize(img)[0], np.eye(10, dtype=np.float32)[0])["state"]
                      for img in images]
            report["mnist_scribble_rate"] = {"digits": len(images),
                                             "scribble": states.count("scribble"),
                                             "share": round(states.count("scribble") / len(images), 4),
                                             "max_fill_permille": core.default_thresholds().max_fill_permille}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
