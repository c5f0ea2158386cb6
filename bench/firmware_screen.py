"""What the board's screen would show for a drawing and a model file, from the firmware's own code
(``firmware/host/fwhost.c``: model check, normalization, model input, softmax and decision). ESP-DL
does not run on a host: the model's integer outputs come from the host interpreter.

    python bench/firmware_screen.py MODEL.espdl CANVAS.png [--partition-bytes N] [--rv32]

``--rv32`` runs the build for the ESP32-P4's ISA under qemu-riscv32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from fwcore import build_fwhost, fwhost_request, run_fwhost

from mnistp4.errors import Mnistp4Error


def model_outputs(model_path: Path, image28: np.ndarray):
    """The model's integer outputs for one 28x28 image, or None when the host cannot read the file."""
    from mnistp4.stages.quantize.espdl_reader import read_espdl
    from mnistp4.stages.quantize.interpreter import Interpreter, predict_ints

    try:
        model = read_espdl(model_path)
        return predict_ints(model, image28[None], interpreter=Interpreter(model))[0]
    except Mnistp4Error:
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("canvas", type=Path, help="grey or colour image, white ink on black or dark on white")
    parser.add_argument("--partition-bytes", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--rv32", action="store_true")
    args = parser.parse_args(argv)
    canvas = cv2.imread(str(args.canvas), cv2.IMREAD_GRAYSCALE)
    if canvas is None:
        print(f"{args.canvas}: not a readable image", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        cmd = build_fwhost(tmp, "rv32" if args.rv32 else "host")
        data = args.model.read_bytes()
        first, _ = run_fwhost(cmd, fwhost_request(data, [], None, args.partition_bytes))
        outputs = None
        if first["name"] == "ok":
            from fwcore import reference_normalize

            outputs = model_outputs(args.model, reference_normalize(canvas))
        head, (rec,) = run_fwhost(cmd, fwhost_request(data, [canvas], [outputs], args.partition_bytes))
    print(f"model: {head['screen']} (rule {head['name']})")
    print(f"answer: {rec['answer'] or '(blank)'}")
    print(f"status: {rec['status']}")
    if rec["ran"]:
        print("bars:   " + " ".join(f"{d}:{p:.2f}" for d, p in enumerate(rec["probs"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
