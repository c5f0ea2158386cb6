"""Quantization-aware fine-tuning for ESP-DL's Int8 arithmetic.

The trained model is folded (BatchNorm into the convolutions, as the export does) and fine-tuned
for a few epochs while its forward pass rounds like the chip does:

* the input to the exponent the file will use (``ceil(log2(max/127))`` of the normalized range);
* every Conv/Gemm weight to int8 with one power-of-two exponent per output channel,
  ``ceil(log2(max|w_c|/127))`` — the rule esp-ppq's min/max calibration applies;
* every activation the file stores (each ReLU output, and a Conv/Gemm output that no ReLU
  consumes, e.g. the logits) to int8 with one power-of-two exponent per tensor, from the maximum
  the float model reaches on the calibration images ``mnistp4 quantize`` will use (min/max, as
  esp-ppq calibrates), re-measured before every epoch and at the end.

Rounding is half-to-even (``torch.round``, the P4's mode) with saturation; gradients pass straight
through the rounding and stop outside the clamp range. The fine-tuned weights are written back on
their int8 grid into the original architecture (BatchNorm set to the identity carrying the folded
bias), so the export and esp-ppq see weights they can represent exactly and the usual
``mnistp4 quantize`` path applies.

Options: the float model as teacher (``distill``: the loss follows its softened outputs, so the
Int8 model keeps its decisions), and learned clipping (``learn_clipping``: each ReLU output's
exponent is a parameter trained with the LSQ step gradient of :func:`fake_quant`, capped at
the min/max one; a range learned below min/max is written back as ``Hardtanh(0, 127 * 2**e)``, an ONNX ``Clip``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

QMAX, QMIN = 127, -128


def pow2_exponent(peak):
    """The smallest exponent e with peak <= 127 * 2**e (a tensor or a float)."""
    import torch

    peak = torch.as_tensor(peak, dtype=torch.float32).clamp_min(1e-12)
    return torch.ceil(torch.log2(peak / QMAX))


def fake_quant(x, exponent):
    """Round ``x`` to int8 steps of 2**exponent (broadcast), saturating. The gradient passes
    straight through the rounding inside the range and stops where it saturates; where the
    exponent carries a gradient (learned clipping) it gets the LSQ step gradient (Esser et al.
    2020): ``round(v) - v`` inside the range and the range limit where values saturate, so a
    smaller step is chosen where the clipped outliers cost less than the coarser rounding of
    everything else. With a fixed exponent (weights, calibrated activations) the same values and
    gradients come from one autograd function (:func:`_fixed_step_rounding`), in fewer passes."""
    import torch

    step = torch.pow(2.0, exponent)
    if not step.requires_grad:
        return _fixed_step_rounding().apply(x, step)
    return fake_quant_ste(x, step)


def fake_quant_ste(x, step):
    """:func:`fake_quant` at the step ``step`` written out as the straight-through formula: what
    autograd differentiates where the step is learned, and the reference of the fixed-step path."""
    import torch

    v = torch.clamp(x / step, QMIN, QMAX)
    return (v + (torch.round(v) - v).detach()) * step


_FIXED_STEP_ROUNDING = None


def _fixed_step_rounding():
    """The autograd function of :func:`fake_quant` at a fixed power-of-two step, bit for bit the
    formula of :func:`fake_quant_ste`: multiplying by 1 / step is exact (a power of two), and
    ``v + (round(v) - v)`` is ``round(v)`` exactly for int8 values; the gradient is the incoming
    one where ``x / step`` lies in the int8 range (bounds included, as clamp's), zero where it
    saturates. It keeps one mask for the backward pass instead of the formula's four tensors."""
    global _FIXED_STEP_ROUNDING
    if _FIXED_STEP_ROUNDING is None:
        import torch

        class FixedStepRounding(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, step):
                v = x * (1.0 / step)
                ctx.save_for_backward((v >= QMIN) & (v <= QMAX))
                # + 0.0: a zero comes out +0.0, as from the formula's v + (round(v) - v)
                return torch.round(v.clamp_(QMIN, QMAX)).add_(0.0).mul_(step)

            @staticmethod
            def backward(ctx, grad):
                (inside,) = ctx.saved_tensors
                return torch.where(inside, grad, 0.0), None

        _FIXED_STEP_ROUNDING = FixedStepRounding
    return _FIXED_STEP_ROUNDING


def round_ste(x):
    """Round to the nearest integer, gradient passed straight through."""
    import torch

    return x + (torch.round(x) - x).detach()


def weight_exponents(w):
    """One exponent per output channel (dim 0), shaped to broadcast over ``w``."""
    peak = w.detach().abs().reshape(w.shape[0], -1).amax(1)
    return pow2_exponent(peak).reshape([-1] + [1] * (w.dim() - 1))


def _weight_quantizer():
    from torch import nn

    class WeightQuant(nn.Module):
        def __init__(self):
            super().__init__()
            self.enabled = True

        def forward(self, w):
            return fake_quant(w, weight_exponents(w)) if self.enabled else w

    return WeightQuant()


def _activation_quantizer():
    import torch
    from torch import nn

    class ActivationQuant(nn.Module):
        """Per-tensor int8 at the exponent of ``peak``; in calibration mode it passes values
        through and records their largest magnitude instead."""

        def __init__(self):
            super().__init__()
            self.register_buffer("peak", torch.zeros(()))
            self.calibrating = False
            self.log2_step = None  # learned clipping: a parameter once enable_learning() is called

        def enable_learning(self):
            """Learn the exponent (the clipping range 127 * 2**e), starting at the calibrated one."""
            self.log2_step = nn.Parameter(pow2_exponent(self.peak).clone())

        def calibrated_exponent(self):
            return pow2_exponent(self.peak)

        def exponent(self):
            """The calibrated exponent, or the learned one where it is smaller: learning may only
            clip (a finer step than min/max gives), never widen past the largest value seen."""
            if self.log2_step is None:
                return self.calibrated_exponent()
            return torch.minimum(round_ste(self.log2_step), self.calibrated_exponent())

        def forward(self, x):
            if self.calibrating:
                self.peak.copy_(torch.maximum(self.peak, x.detach().abs().max()))
                return x
            if float(self.peak) == 0.0:
                return x
            return fake_quant(x, self.exponent())

    return ActivationQuant()


def _quantized_outputs(model) -> list[str]:
    """Names of the modules whose outputs the int8 file stores: every ReLU, and every Conv/Linear
    whose output is not consumed by a ReLU."""
    from torch import nn

    from mnistp4.stages.models.common import trace_calls

    calls = trace_calls(model, (nn.Conv2d, nn.Linear, nn.ReLU))
    relu_inputs = {id(inp) for _, mod, inp, _ in calls if isinstance(mod, nn.ReLU)}
    return [n for n, mod, _, out in calls if isinstance(mod, nn.ReLU) or id(out) not in relu_inputs]


class QatModel:
    """A folded copy of a trained model with fake quantization attached (weights, activations, input)."""

    def __init__(self, model, input_peak: float):
        import torch
        from torch import nn
        from torch.nn.utils import parametrize

        from mnistp4.stages.models.export import fold_batchnorm

        self.original = model
        self.net = fold_batchnorm(model)
        outputs = set(_quantized_outputs(self.net))
        self.activations, self.weights = {}, []
        self.relu_names = [n for n, m in self.net.named_modules() if n in outputs and isinstance(m, nn.ReLU)]
        for name, m in self.net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                wq = _weight_quantizer()
                parametrize.register_parametrization(m, "weight", wq)
                self.weights.append(wq)
            if name in outputs:
                q = _activation_quantizer()
                self.activations[name] = q
                m.register_forward_hook(lambda mod, inp, out, _q=q: _q(out))
                m.add_module("output_quant", q)  # moves with .to() / train() / eval()
        self.input_exponent = pow2_exponent(torch.tensor(float(input_peak)))
        self.quantize_input = True

    def __call__(self, x):
        return self.net(fake_quant(x, self.input_exponent) if self.quantize_input else x)

    def calibrate(self, x) -> None:
        """Activation ranges = the float model's maxima on ``x`` (normalized input batch)."""
        import torch

        for q in self.activations.values():
            q.peak.zero_()
            q.calibrating = True
        for w in self.weights:
            w.enabled = False
        self.quantize_input = False
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                for i in range(0, len(x), 256):
                    self(x[i : i + 256])
        finally:
            for q in self.activations.values():
                q.calibrating = False
            for w in self.weights:
                w.enabled = True
            self.quantize_input = True
            self.net.train(was_training)

    def parameters(self):
        return self.net.parameters()

    def enable_clipping(self) -> list:
        """Learn the clipping range of every ReLU output (call after :meth:`calibrate`); returns
        the new parameters (log2 of the step), which want their own learning rate."""
        params = []
        for name in self.relu_names:
            self.activations[name].enable_learning()
            params.append(self.activations[name].log2_step)
        return params

    def clip_bounds(self) -> dict[str, float]:
        """``{relu name: 127 * 2**e}`` for every ReLU whose learned exponent clips below min/max."""
        out = {}
        for name in self.relu_names:
            q = self.activations[name]
            if q.log2_step is not None and float(q.peak) > 0:
                e, e_cal = int(q.exponent()), int(q.calibrated_exponent())
                if e < e_cal:
                    out[name] = QMAX * 2.0**e
        return out

    def train(self, mode: bool = True):
        self.net.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def exponents(self) -> dict[str, int]:
        return {name: int(q.exponent()) for name, q in self.activations.items()}

    def to_original(self):
        """The original architecture carrying the fine-tuned weights on their int8 grid: each
        Conv/Linear gets its quantized weight; a BatchNorm after a conv becomes the identity plus
        the folded bias (mean 0, variance 1 - eps, scale 1), so folding it again is exact. A ReLU
        with a learned clipping range becomes ``Hardtanh(0, 127 * 2**e)`` (ONNX ``Clip``), from
        which esp-ppq's min/max calibration picks exactly that exponent."""
        import torch
        from torch import nn

        from mnistp4.stages.models.common import apply_clipping
        from mnistp4.stages.models.export import batchnorm_pairs

        out = copy.deepcopy(self.original).eval()
        apply_clipping(out, self.clip_bounds())
        modules = dict(out.named_modules())
        bn_of = dict(batchnorm_pairs(out))
        with torch.no_grad():
            for name, m in self.net.named_modules():
                if not isinstance(m, (nn.Conv2d, nn.Linear)):
                    continue
                target = modules[name]
                target.weight.copy_(m.weight)  # the parametrized (quantized) weight
                bias = m.bias if m.bias is not None else torch.zeros(m.weight.shape[0])
                if name in bn_of:
                    bn = modules[bn_of[name]]
                    bn.weight.fill_(1.0)
                    bn.bias.copy_(bias)
                    bn.running_mean.zero_()
                    bn.running_var.fill_(1.0 - bn.eps)
                    if target.bias is not None:
                        target.bias.zero_()
                elif target.bias is not None:
                    target.bias.copy_(bias)
        return out


@dataclass
class QatSettings:
    epochs: int = 2
    lr: float = 2e-5
    batch_size: int = 128
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int | None = None
    # share of the loss that follows the float model's own softened outputs (0 = labels only): the
    # fine-tuned Int8 model learns to make the float model's decisions instead of new ones of its own
    distill: float = 0.0
    distill_temperature: float = 2.0
    learn_clipping: bool = False  # learn each ReLU output's range (exponent) instead of min/max
    clip_lr: float = 1e-2  # learning rate of the log2 steps (Adam; the weights use lr)


def finetune(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    epoch_order,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    calib_images: np.ndarray,
    settings: QatSettings,
    augmentations=(),
    on_epoch=None,
    progress=None,
):
    """Fine-tune ``model`` (a trained float module) with fake quantization on uint8 digits.
    ``epoch_order(generator)`` gives each epoch's sample indices (a weighting plugin's order);
    activation ranges come from ``calib_images`` (uint8, the set ``mnistp4 quantize`` calibrates on).

    With ``settings.distill`` > 0 the loss mixes the labels with the float model's own softened
    outputs on the same augmented batch (the float model is the teacher).

    Returns ``(qat, history)``: the :class:`QatModel` and one row per epoch with the fake-quantized
    test accuracy (the Int8 estimate; the exported file is measured by ``mnistp4 quantize``) and the
    number of test digits whose prediction differs from the float model's."""
    import torch
    import torch.nn.functional as F

    from mnistp4.stages.models.common import MEAN, STD
    from mnistp4.stages.training.loop import (
        _batches_batch_pipeline,
        auto_threads,
        distillation_loss,
        epoch_seed,
        evaluate,
        normalized,
        soft_targets,
    )

    torch.set_num_threads(settings.threads or auto_threads())
    torch.manual_seed(settings.seed)
    input_peak = max(abs((0.0 - MEAN) / STD), abs((1.0 - MEAN) / STD))
    qat = QatModel(model, input_peak)
    teachers = [copy.deepcopy(model).eval()] if settings.distill > 0 else []
    float_preds = evaluate(model, test_images, test_labels)["preds"]
    calib_x = normalized(torch.from_numpy(np.array(calib_images, np.uint8)))
    images = np.ascontiguousarray(images)
    labels = np.asarray(labels, np.int64)
    steps = -(-len(epoch_order(torch.Generator().manual_seed(0))) // settings.batch_size)
    groups = [{"params": list(qat.parameters()), "lr": settings.lr}]
    if settings.learn_clipping:
        qat.calibrate(calib_x)  # the starting ranges: min/max
        groups.append({"params": qat.enable_clipping(), "lr": settings.clip_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, settings.epochs * steps))
    task = progress.add_task("quantization-aware fine-tuning", total=settings.epochs * steps) if progress else None
    history = []
    start = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        gen = torch.Generator().manual_seed(epoch_seed(settings.seed, 1000 + epoch))
        order = epoch_order(gen)
        qat.calibrate(calib_x)
        qat.train()
        total, seen = 0.0, 0
        for x, y in _batches_batch_pipeline(images, labels, order, settings.batch_size, list(augmentations), gen):
            opt.zero_grad(set_to_none=True)
            out = qat(x)
            loss = F.cross_entropy(out, y, label_smoothing=settings.label_smoothing)
            if teachers:
                loss = distillation_loss(
                    out,
                    soft_targets(teachers, x, settings.distill_temperature),
                    loss,
                    weight=settings.distill,
                    temperature=settings.distill_temperature,
                )
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
            if task is not None:
                progress.advance(task)
        qat.calibrate(calib_x)  # the ranges of the weights as they are now, as esp-ppq will measure them
        qat.eval()
        test = evaluate(qat, test_images, test_labels)
        row = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            "fake_quant_accuracy": test["accuracy"],
            "changed_vs_float": int((test["preds"] != float_preds).sum()),
            "clip": qat.clip_bounds(),
            "seconds": round(time.perf_counter() - start, 2),
            "exponents": qat.exponents(),
        }
        history.append(row)
        log.info(
            "QAT epoch %d: loss %.4f, fake-quantized test accuracy %.4f",
            epoch,
            row["train_loss"],
            row["fake_quant_accuracy"] or math.nan,
        )
        if on_epoch:
            on_epoch(row)
    return qat, history
