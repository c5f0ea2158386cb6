"""Error of the firmware core's own exp (dc_expf, bit-exact twin ``reference_expf`` in fwcore.py)
against exp in float64 on [-87, 0], the range softmax uses (logit minus the largest logit).

    python bench/firmware_expf.py [--points N]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from fwcore import reference_expf


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2_000_001)
    args = parser.parse_args(argv)
    x = np.linspace(-87, 0, args.points, dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    rel = np.abs(reference_expf(x).astype(np.float64) - exact) / exact
    worst = int(np.argmax(rel))
    print(
        f"{args.points:,} points on [-87, 0]: max relative error {rel.max():.3g} "
        f"({rel.max() / 2.0**-23:.2f} float32 ulp) at x = {x[worst]:.6g}; mean {rel.mean():.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
