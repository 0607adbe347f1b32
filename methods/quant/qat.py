"""Quantization-aware training (QAT): int8 whose scales were learned while fine-tuning,
deployed as learned on every backend (never recalibrated).

The parent's fp32 model is fake-quantized with a library's QAT API, its observers are
initialised on `calibration_size` training images, then it is fine-tuned on the labelled
images with distillation from the parent (bench.modelling.training_rule's fine-tuning rule), with
observers and batch-norm statistics frozen for the second half of the steps (as
torchvision's QAT recipe does) so that the weights adapt to the scales they ship with:

  torch        FX QAT, x86 qconfig (prepare_qat_fx, convert_fx): the int8 module made here
  onnxruntime  that int8 module exported by torch.onnx (TorchScript exporter) as QDQ: its
               trained scales and int8 weights, fused by ONNX Runtime into QLinearConv/QGemm
  openvino     the same QDQ ONNX, read as FakeQuantize: u8/i8 convolutions on the CPU plugin
  executorch, litert, torch-export, torch-aoti
               pt2e QAT (prepare_qat_pt2e) with the backend's own quantizer in its QAT
               config, trained with the same recipe when deployed (each quantizer places
               its fake-quant nodes differently, so FX's scales cannot be handed over):
               methods.quant.qat_pt2e
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench import deprecated
from bench.backends import ExportEnv, NotApplicable, Realised
from bench.backends.onnx_export import export_onnx
from bench.modelling.architectures import clone
from bench.modelling.parent import Parent
from bench.modelling.training import batches, predict_logits, train
from bench.modelling.training_rule import QAT_LR, finetune_settings
from methods import register
from methods.base import Artifact, Context, Method, Param
from methods.quant import relu6 as relu6_rule
from methods.quant.qat_pt2e import QUANTIZERS, Pt2eQat

FREEZE_AT = 0.5  # share of the steps after which observers and batch-norm statistics freeze


@register
class QuantAwareTraining(Method):
    name = "quant.qat"
    summary = ("int8 quantization-aware training: the parent fine-tuned with fake-quantized "
               "weights and activations (distilling from its fp32 self); every backend deploys "
               "the trained scales (PyTorch FX QAT, exported as QDQ for ONNX Runtime and "
               "OpenVINO; pt2e QAT with each edge quantizer)")
    params = (Param("epochs", float, 1.0, "fine-tuning epochs of the labelled images",
                    bounds="(0, inf)"),
              Param("lr", float, QAT_LR, "peak AdamW learning rate while fine-tuning (the training "
                                 "rule's for QAT)", bounds="(0, inf)"),
              Param("alpha", float, 0.5, "weight of distillation from the parent",
                    bounds="[0, 1]"),
              Param("temperature", float, 4.0, "KD temperature", bounds="(0, inf)"),
              Param("calibration_size", int, 128, "training images that initialise the "
                    "observers before training", bounds="[1, inf)"),
              Param("relu6", str, "range", "how FX QAT (torch, onnxruntime, openvino) quantizes "
                    "ReLU6: `range` fuses it into its convolution as ReLU with the int8 "
                    "output range fixed to [0, 6]; `clip` keeps a requantizing clip after "
                    "the convolution; `relu` replaces it by ReLU (methods.quant.relu6, "
                    "docs/run.md)", choices=relu6_rule.CHOICES))
    terminal = True
    travels = False  # FX int8 modules do not unpickle in torch 2.14 (see quant.static)
    #: it trains (an epoch of the parent by default, ~2x a float step): asked for by name,
    #: `--methods kd+quant.qat`, not by the `quant` family of the default run
    in_family = False

    def apply(self, parent: Artifact, ctx: Context, epochs: float, lr: float, alpha: float,
              temperature: float, calibration_size: int, relu6: str = "range") -> Artifact:
        _check(epochs, lr, alpha, temperature, calibration_size)
        start = time.perf_counter()
        logits = (ctx.teacher_logits if parent.float_module is ctx.teacher
                  else predict_logits(parent.float_module, ctx.train_images, fast=True))
        recipe = Recipe(ctx.train_images, ctx.train_labels, ctx.task, logits,
                        ctx.calibration_images[:calibration_size], epochs, lr, ctx.seed, alpha,
                        temperature, parent.name, ctx.augment, parent.float_module)
        prepared = prepare_fx(parent.float_module, recipe, ctx.image_size, relu6)
        recipe.fine_tune(prepared, self.name, _freeze_fx)
        with deprecated.silenced("fx-quantization"):
            from torch.ao.quantization.quantize_fx import convert_fx

            q = convert_fx(prepared.eval())
        shared: dict = {}  # one pt2e QAT per quantizer: torch-export and torch-aoti share it
        edge = {b: Pt2eQat(recipe, b, shared) for b in QUANTIZERS}
        return Artifact(
            name=self.name, arch=parent.arch, module=q, float_module=parent.float_module,
            precision="int8",
            realisations={"torch": as_trained, "onnxruntime": qdq_onnx,
                          "openvino": qdq_openvino, **edge},
            notes=(recipe.describe(), *([relu6_rule.NOTES[relu6]] if any(
                isinstance(m, nn.ReLU6) for m in parent.float_module.modules()) else [])),
            seconds=parent.seconds + time.perf_counter() - start)


def _check(epochs, lr, alpha, temperature, calibration_size) -> None:
    for ok, what in ((epochs > 0, f"epochs must be > 0, got {epochs}"),
                     (lr > 0, f"lr must be > 0, got {lr}"),
                     (0.0 <= alpha <= 1.0, f"alpha must lie in [0, 1], got {alpha}"),
                     (temperature > 0, f"temperature must be > 0, got {temperature}"),
                     (calibration_size >= 1, f"calibration_size must be >= 1, got {calibration_size}")):
        if not ok:
            raise ValueError(f"quant.qat: {what}")


@dataclass(frozen=True)
class Recipe:
    """The fine-tuning every realisation runs: the same images, parent logits, schedule."""

    images: np.ndarray
    labels: np.ndarray
    task: object
    parent_logits: torch.Tensor
    calibration: np.ndarray
    epochs: float
    lr: float
    seed: int
    alpha: float
    temperature: float
    parent: str
    #: the run's augmentation policy, and the float parent that then scores each
    #: augmented view (its precomputed `parent_logits` are exact without augmentation)
    augment: str = "none"
    source: nn.Module | None = None

    @property
    def steps(self) -> int:
        """Set explicitly, so the freeze point is known (bench.modelling.training_rule's own rule)."""
        per_epoch = -(-len(self.images) // finetune_settings(1, 0).batch_size)
        return max(1, int(round(self.epochs * per_epoch)))

    def describe(self) -> str:
        return (f"QAT fine-tuned {self.steps} steps from {self.parent} (alpha {self.alpha}, "
                f"T {self.temperature}, lr {self.lr}), observers initialised on "
                f"{len(self.calibration)} training images and frozen with batch norm for the "
                f"last {1 - FREEZE_AT:.0%} of the steps")

    def calibrate(self, prepared, eval_mode) -> None:
        """One pass of the calibration images through the observers (eval-mode batch norm)."""
        eval_mode(prepared)
        with torch.no_grad():
            for x, _, _ in batches(self.calibration, None, 32, None):
                prepared(x)

    def fine_tune(self, prepared, label: str, freeze) -> None:
        """Train `prepared` in place, without `train`'s final batch-norm re-estimation: it
        would undo the frozen statistics the weights were trained against (and leave
        frozen ConvBn modules reset)."""
        schedule = _Schedule(max(1, int(round(self.steps * FREEZE_AT))), freeze)
        settings = replace(finetune_settings(self.epochs, self.seed, self.lr, self.augment),
                           steps=self.steps, mixed_precision=False)  # fake quantizers: fp32
        train(prepared, self.images, self.labels, self.task, settings, label,
              teacher_logits=self.parent_logits, alpha=self.alpha, temperature=self.temperature,
              after_step=schedule, recalibrate=False,
              parent=None if self.source is None else Parent((self.source,)))


class _Schedule:
    """train's after_step: freezes observers and batch norm after `at` steps."""

    def __init__(self, at: int, freeze):
        self.at, self.freeze, self.step = at, freeze, 0

    def __call__(self, model: nn.Module) -> None:
        self.step += 1
        if self.step == self.at:
            self.freeze(model)


# -- PyTorch FX (torch) and its QDQ export (onnxruntime, openvino) ---------------------------

def prepare_fx(float_module: nn.Module, recipe: Recipe, image_size: int,
               relu6: str = "range") -> nn.Module:
    """The parent's clone with FX QAT fake-quantization (x86 qconfig), observers
    initialised; its ReLU6 quantized as `relu6` says (methods.quant.relu6)."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    model = clone(float_module)
    mapping = get_default_qat_qconfig_mapping("x86")
    base = mapping.global_qconfig
    fused = relu6_rule.fold(model) if relu6 == "range" else []
    if relu6 == "relu":
        relu6_rule.to_relu(model)
    for name in fused:
        mapping.set_module_name(name, relu6_rule.fixed_range_qconfig(base))
    with deprecated.silenced("fx-quantization"):
        torch.backends.quantized.engine = "x86"
        prepared = prepare_qat_fx(model.train(), mapping,
                                  (torch.zeros(2, 3, image_size, image_size),))
    relu6_rule.learned_inputs(prepared, fused, base)
    recipe.calibrate(prepared, nn.Module.eval)
    return prepared


def _freeze_fx(model: nn.Module) -> None:
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats

    model.apply(torch.ao.quantization.disable_observer)
    model.apply(freeze_bn_stats)  # ConvBn modules: folded with their running statistics
    for m in model.modules():  # standalone batch norms (DenseNet's pre-activations) too
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def as_trained(artifact, float_graph, env: ExportEnv, out_dir: Path) -> Realised:
    """The torch realisation is the int8 module `apply` converted (the run's reference)."""
    return Realised(artifact.module, "int8", (
        "trained scales deployed (not recalibrated): FX QAT int8, x86 qconfig (per-channel "
        "int8 weights, uint8 activations)",))


def qdq_onnx(artifact, float_onnx, env: ExportEnv, out_dir: Path) -> Realised:
    out = Path(out_dir) / "model.onnx"
    _export_qdq(artifact.module, out, env)
    return Realised(out, "int8", (
        "trained scales deployed (not recalibrated): the FX QAT int8 model exported as QDQ "
        "(uint8 activations, per-channel int8 weights), run by ONNX Runtime as QLinearConv/QGemm",),
        renders=artifact.module)


def qdq_openvino(artifact, ov_model, env: ExportEnv, out_dir: Path) -> Realised:
    import openvino as ov

    path = env.work_dir / "onnx" / f"{Path(out_dir).parent.name}-qat.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    _export_qdq(artifact.module, path, env)
    # Core.read_model, not ov.convert_model: convert_model's MOC transformations changed
    # this QDQ graph's results from its first depthwise convolution on (kd+quant.qat,
    # relu6=clip, default data: test AUC 0.914 read against 0.891 converted, ONNX Runtime
    # 0.914; OpenVINO 2026.4, docs/run.md); read_model's graph matches ONNX Runtime's.
    return Realised(ov.Core().read_model(str(path)), "int8", (
        "trained scales deployed (not recalibrated): the FX QAT int8 model exported as QDQ "
        "ONNX, read by OpenVINO as FakeQuantize (int8 convolutions)",), renders=artifact.module)


def _export_qdq(module: nn.Module, path: Path, env: ExportEnv) -> None:
    """torch.onnx writes an FX int8 module's quantized ops as QuantizeLinear/DequantizeLinear
    around float ops, with its scales and int8 weights; it lacks quantized batch norm
    (DenseNet), which gets the same form as torch's own quantized norms."""
    _register_batch_norm()
    try:
        with deprecated.silenced("fx-quantization"):  # its quantized tensors (the ONNX
            export_onnx(module, path, env.image_size)  # exporter's own: export_onnx)
    except Exception as exc:  # noqa: BLE001 - an op torch.onnx cannot write
        raise NotApplicable(f"torch.onnx cannot export this FX int8 model: "
                            f"{str(exc).splitlines()[0][:200]}") from exc


def _register_batch_norm() -> None:
    from torch.onnx import register_custom_op_symbolic, symbolic_helper, symbolic_opset9

    def symbolic(relu: bool):
        @symbolic_helper.parse_args("v", "v", "v", "v", "v", "f", "v", "v")
        def batch_norm(g, x, weight, bias, mean, var, eps, scale, zero_point):
            x, _, _, _ = symbolic_helper.dequantize_helper(g, x)
            out = symbolic_opset9.batch_norm(g, x, weight, bias, mean, var, False, 0.0, eps, False)
            out = g.op("Relu", out) if relu else out
            return symbolic_helper.quantize_helper(g, out, scale, zero_point)
        return batch_norm

    for op, relu in (("quantized::batch_norm2d", False), ("quantized::batch_norm2d_relu", True)):
        register_custom_op_symbolic(op, symbolic(relu), 13)
