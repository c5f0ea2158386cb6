"""esp-ppq driver: ONNX -> ``.espdl`` (Int8/Int16, ESP32-P4/S3) with named quantization recipes,
esp-ppq's own error analysis, its simulated outputs, and a bit-exact check of the exported file.

``espdl_quantize_onnx`` simplifies (rewrites) the ONNX file it is given and writes side files next
to its output, so every call works on a copy inside a temporary folder and the results are moved
into place one file at a time (atomic renames).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistp4.digitsets import MNIST_MEAN as MEAN  # one definition for every stage
from mnistp4.digitsets import MNIST_STD as STD
from mnistp4.errors import InputError, UsageError
from mnistp4.io import atomic_path
from mnistp4.records import QuantResult  # noqa: F401 - the contract type, re-exported
from mnistp4.stages.quantize.espdl_reader import EspdlModel, read_espdl
from mnistp4.stages.quantize.interpreter import Interpreter, check_test_values, predict_ints

log = logging.getLogger(__name__)


TARGETS = ("esp32p4", "esp32s3")
BITS = (8, 16)
SIDE_SUFFIXES = (".espdl", ".json", ".info")
MIN_CALIB_STEPS = 8


@dataclass
class Recipe:
    """How esp-ppq quantizes: activation calibration, optional passes, Int16 layers."""

    name: str
    description: str
    calib_algorithm: str = "kl"  # activation calibration for 8 bits (16 bits: minmax)
    first_layer_algorithm: str = ""  # override for the first Conv (its input is the image)
    equalization: bool = False
    bias_correct: bool = False
    int16_layers: tuple[str, ...] = ()  # "first", "last" or ONNX node names: Int16 in an Int8 model
    align: bool = False  # power-of-two range alignment (mnistp4.stages.quantize.align) first


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("ppq-default", "esp-ppq's espdl setting as shipped: KL activation calibration"),
        Recipe("minmax", "min/max activation calibration: no activation is clipped", calib_algorithm="minmax"),
        Recipe(
            "input-minmax",
            "KL calibration, min/max for the first layer so bright pixels are not clipped",
            first_layer_algorithm="minmax",
        ),
        Recipe("percentile", "percentile activation calibration", calib_algorithm="percentile"),
        Recipe("mse", "MSE-optimal activation ranges", calib_algorithm="mse"),
        Recipe(
            "equalize", "min/max + esp-ppq layerwise weight equalization", calib_algorithm="minmax", equalization=True
        ),
        Recipe("bias-correct", "min/max + esp-ppq bias correction", calib_algorithm="minmax", bias_correct=True),
        Recipe(
            "mixed-first16",
            "min/max, first layer in Int16 (mixed precision)",
            calib_algorithm="minmax",
            int16_layers=("first",),
        ),
        Recipe(
            "mixed-last16",
            "min/max, last layer in Int16 (mixed precision)",
            calib_algorithm="minmax",
            int16_layers=("last",),
        ),
        Recipe(
            "pow2-align",
            "min/max after power-of-two range alignment of every activation and the logits",
            calib_algorithm="minmax",
            align=True,
        ),
        Recipe(
            "pow2-align-last16",
            "power-of-two range alignment, last layer in Int16",
            calib_algorithm="minmax",
            align=True,
            int16_layers=("last",),
        ),
    ]
}
DEFAULT_RECIPE = "pow2-align"  # best measured: docs/history.md
AUTO = (
    "auto"  # chosen per model by mnistp4.stages.quantize.recipe_select (quantize_run resolves it before quantize_onnx)
)


class _DebugSink:
    """A stream for esp-ppq's own loggers: their lines go to this module's debug log."""

    def write(self, text: str) -> int:
        if text.strip():
            log.debug("esp-ppq: %s", text.strip())
        return len(text)

    def flush(self) -> None:
        pass


def _silence_ppq_loggers() -> None:
    """esp-ppq's loggers keep the ``sys.stdout`` of their creation time; point them at the debug
    log so nothing of theirs lands in ``--json`` output."""
    from esp_ppq.log import logger as ppq_log

    for lg in list(ppq_log.initialized_loggers.values()):
        for handler in lg._handlers.values():
            if getattr(handler, "_file_name", None) is None:
                handler._fd = _DebugSink()


_frozen_depth = 0
_frozen_lock = threading.Lock()


@contextlib.contextmanager
def ppq_heap_frozen():
    """esp-ppq calls ``gc.collect()`` before many of its functions (each batch its simulator runs,
    each calibration pass). A full collection walks every object of the process, which in a
    long-lived process holding torch, a web server or a test session costs a tenth of a second and
    more each time. Frozen (``gc.freeze``), the objects that existed before esp-ppq was called are
    skipped; they are unfrozen afterwards, so nothing is kept longer than one call. Re-entrant, and
    shared by the threads of a process (a web page's update beside the server's requests): the heap
    is unfrozen when the last of them leaves."""
    global _frozen_depth
    with _frozen_lock:
        if _frozen_depth == 0:
            gc.freeze()
        _frozen_depth += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_depth -= 1
            if _frozen_depth == 0:
                gc.unfreeze()


def import_ppq():
    """Import esp-ppq with its start-up banner sent to the debug log instead of stdout."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        import esp_ppq.api  # noqa: F401
    log.debug("%s", buf.getvalue())
    _silence_ppq_loggers()


def check_options(bits: int, target: str, recipe: str) -> None:
    if int(bits) not in BITS:
        raise UsageError(f"--bits must be 8 or 16, got {bits}")
    if target not in TARGETS:
        raise UsageError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if recipe not in RECIPES and recipe != AUTO:
        raise UsageError(f"unknown quantization recipe {recipe!r}; recipes: {', '.join(RECIPES)}, {AUTO}")


def normalize(images_uint8: np.ndarray):
    """uint8 (N, 28, 28) -> float tensor (N, 1, 28, 28) exactly like the ONNX model expects."""
    import torch

    x = torch.from_numpy(np.array(images_uint8, dtype=np.uint8)).float().div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def _layer_names(onnx_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(onnx_path))
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]


def _setting(recipe: Recipe, bits: int, target: str, layers: list[str]):
    import_ppq()
    from esp_ppq.api.espdl_interface import get_target_platform
    from esp_ppq.api.setting import QuantizationSettingFactory

    s = QuantizationSettingFactory.espdl_setting(num_of_bits=bits)
    if bits == 8:
        s.quantize_activation_setting.calib_algorithm = recipe.calib_algorithm
        if recipe.first_layer_algorithm and layers:
            s.quantize_activation_setting.calib_algorithm_per_layer = {layers[0]: recipe.first_layer_algorithm}
        s.equalization = recipe.equalization
        s.bias_correct = recipe.bias_correct
        int16 = get_target_platform(target, 16, debug=True)  # exact Int16 simulation, as on the chip
        for which in recipe.int16_layers:
            name = {"first": layers[0] if layers else None, "last": layers[-1] if layers else None}.get(which, which)
            if name:
                s.dispatching_table.append(name, int16)
    return s


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    bits: int = 8,
    target: str = "esp32p4",
    calib_images: np.ndarray,
    recipe: str = DEFAULT_RECIPE,
    error_report: bool = True,
    batch: int = 32,
) -> QuantResult:
    """Quantize ``onnx_path`` into ``out_path`` (+ ``.json``/``.info`` side files beside it) with
    esp-ppq, embedding test values (the first calibration image). The ONNX file is never changed."""
    import torch

    import_ppq()
    from esp_ppq.api import espdl_quantize_onnx
    from esp_ppq.quantization.analyse import graphwise_error_analyse
    from esp_ppq.quantization.analyse.layerwise import layerwise_error_analyse

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    check_options(bits, target, recipe)
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path} does not exist: export the model first (`mnistp4 train` writes model.onnx)")
    if calib_images.ndim != 3 or calib_images.shape[1:] != (28, 28) or len(calib_images) == 0:
        raise InputError(f"calibration images must be uint8 (N, 28, 28) with N > 0, got {calib_images.shape}")
    if len(calib_images) < MIN_CALIB_STEPS:
        raise UsageError(f"esp-ppq needs at least {MIN_CALIB_STEPS} calibration images, got {len(calib_images)}")
    if recipe not in RECIPES:
        raise UsageError(f"quantize_onnx needs a concrete recipe ({', '.join(RECIPES)}), got {recipe!r}")
    rec = RECIPES[recipe]
    x = normalize(calib_images)
    batch = max(1, min(batch, len(x) // MIN_CALIB_STEPS))  # esp-ppq insists on >= 8 calibration steps
    loader = [x[i : i + batch] for i in range(0, len(x), batch)]
    meta = {
        "mnistp4.mean": str(MEAN),
        "mnistp4.std": str(STD),
        "mnistp4.target": target,
        "mnistp4.bits": str(bits),
        "mnistp4.recipe": recipe,
        "mnistp4.pixel": "x = (pixel/255 - mean)/std",
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnistp4-quant-") as tmp:
        work = Path(tmp) / "model.onnx"
        shutil.copyfile(onnx_path, work)
        try:
            layers = _layer_names(work)
        except Exception as e:
            raise InputError(f"{onnx_path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
        aligned = []
        if rec.align and bits == 8:
            from mnistp4.stages.quantize.align import align_pow2

            aligned = align_pow2(work, work, x.numpy())
        setting = _setting(rec, bits, target, layers)
        export = Path(tmp) / "out" / "model.espdl"
        noise = io.StringIO()
        with (
            contextlib.redirect_stdout(noise),
            contextlib.redirect_stderr(noise),
            torch.no_grad(),
            ppq_heap_frozen(),
        ):
            graph = espdl_quantize_onnx(
                onnx_import_file=str(work),
                espdl_export_file=str(export),
                calib_dataloader=loader,
                calib_steps=len(loader),
                input_shape=[1, 1, 28, 28],
                inputs=[x[:1]],
                target=target,
                num_of_bits=bits,
                setting=setting,
                device="cpu",
                error_report=False,
                export_test_values=True,
                debug=(bits == 16),
                metadata_props=meta,
            )
            layerwise, graphwise = {}, {}
            if error_report:
                steps = min(len(loader), 8)
                graphwise = graphwise_error_analyse(
                    graph=graph, running_device="cpu", dataloader=loader, steps=steps, verbose=False
                )
                layerwise = layerwise_error_analyse(
                    graph=graph, running_device="cpu", dataloader=loader, steps=steps, verbose=False
                )
        _silence_ppq_loggers()  # loggers created during this call
        log.debug("esp-ppq output:\n%s", noise.getvalue())
        if not export.is_file():
            raise InputError(f"esp-ppq wrote no model for {onnx_path}; its log:\n{noise.getvalue()[-2000:]}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        moved = []
        for suffix in SIDE_SUFFIXES:
            src = export.with_suffix(suffix)
            if src.is_file():
                dst = out_path.with_suffix(suffix)
                with atomic_path(dst) as tmp_dst:  # a full disk leaves no half-copied file
                    shutil.copyfile(src, tmp_dst)
                moved.append(dst)
    return QuantResult(
        out_path,
        bits,
        target,
        recipe,
        time.perf_counter() - t0,
        graph,
        {k: float(_first(v)) for k, v in (layerwise or {}).items()},
        {k: float(_first(v)) for k, v in (graphwise or {}).items()},
        moved,
        aligned,
    )


def _first(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def simulate(graph, images_uint8: np.ndarray, batch: int = 500) -> np.ndarray:
    """esp-ppq's simulated (fake-quantized) float outputs of the quantized graph."""
    import torch
    from esp_ppq.executor import TorchExecutor

    ex = TorchExecutor(graph, device="cpu")
    outs = []
    with torch.no_grad(), ppq_heap_frozen():
        for i in range(0, len(images_uint8), batch):
            outs.append(
                ex.forward(inputs=normalize(images_uint8[i : i + batch]))[0]
                .reshape(min(batch, len(images_uint8) - i), -1)
                .numpy()
                .astype(np.float64)
            )
    return np.concatenate(outs)


def verify_against_ppq(
    model: EspdlModel, graph, images_uint8: np.ndarray, interpreter: Interpreter | None = None
) -> dict[str, Any]:
    """Run the file through the host interpreter and esp-ppq's simulator on the same images and
    count the images whose integer outputs differ."""
    it = interpreter or Interpreter(model)
    ours = predict_ints(model, images_uint8, interpreter=it)
    sim = simulate(graph, images_uint8)
    scale = 2.0 ** model.outputs[0].exponent
    sim_int = np.rint(sim / scale).astype(np.int64)
    off_grid = int((sim_int * scale != sim).any(axis=1).sum())
    diff = ours != sim_int
    return {
        "images": int(len(images_uint8)),
        "mismatched_images": int(diff.any(axis=1).sum()),
        "mismatched_values": int(diff.sum()),
        "max_abs_diff": int(np.abs(ours - sim_int).max(initial=0)),
        "off_grid_sim_outputs": off_grid,
        "ints": ours,
        "sim_ints": sim_int,
    }


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    if len(labels) == 0:
        return None
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def onnx_logits(onnx_path: str | Path, images_uint8: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Float logits of the ONNX model with onnxruntime (the float baseline)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    step = batch
    if sess.get_inputs()[0].shape[0] == 1:  # exported for esp-ppq with a batch of one
        batched = _any_batch_session(onnx_path, sess, opts, images_uint8)
        sess, step = (batched, batch) if batched is not None else (sess, 1)
    outs = []
    for i in range(0, len(images_uint8), step):
        outs.append(sess.run(None, {name: normalize(images_uint8[i : i + step]).numpy()})[0])
    return np.concatenate(outs) if outs else np.zeros((0, 10), np.float32)


def _any_batch_session(onnx_path: str | Path, single, opts, images_uint8: np.ndarray):
    """A session of the same model with the batch dimension left open (10,000 one-image runs
    cost seconds), or None when the graph ties itself to one image (a reshape to a fixed shape):
    checked on a few of ``images_uint8`` against the one-image session."""
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(onnx_path))
        for value in list(model.graph.input) + list(model.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        probe = images_uint8[:8]
        if len(probe) < 8:
            return None  # too few images to matter
        name = single.get_inputs()[0].name
        together = sess.run(None, {name: normalize(probe).numpy()})[0]
        alone = np.concatenate([single.run(None, {name: normalize(probe[k : k + 1]).numpy()})[0] for k in range(8)])
    except Exception:  # noqa: BLE001 - any failure: one image at a time, as exported
        return None
    if together.shape != alone.shape or not np.allclose(together, alone, rtol=1e-5, atol=1e-5):
        return None
    return sess


def espdl_predictor(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """``predict(images_uint8) -> logits`` through the host integer interpreter (dequantized)."""
    model = read_espdl(path)
    it = Interpreter(model)
    scale = 2.0 ** model.outputs[0].exponent

    def predict(images_uint8: np.ndarray) -> np.ndarray:
        return predict_ints(model, np.asarray(images_uint8), interpreter=it).astype(np.float64) * scale

    predict.model = model  # type: ignore[attr-defined]
    predict.test_values = check_test_values(model)  # type: ignore[attr-defined]
    return predict
