"""`quant.qat` on the torch.export backends (executorch, litert, torch-export, torch-aoti):
pt2e QAT of the parent with the backend's own quantizer in its QAT config, trained with
the step's recipe when (and only where) it is deployed.

It is apart from methods.quant.qat, which holds the method, its recipe and the FX QAT
that torch, ONNX Runtime and OpenVINO deploy, because each edge quantizer places its
fake-quant nodes differently: FX's trained scales cannot be handed over, so these
realisations train their own, and they import torchao, ExecuTorch and litert-torch only
when called. Backends with the same quantizer (torch-export and torch-aoti: X86Inductor)
share one training per step (`Pt2eQat.shared`); each row still costs its seconds and steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.backends import ExportEnv, NotApplicable, Realised
from bench.backends.litert_backend import convert, converter
from bench.backends.torch_export import export_program, quiet_torchao
from bench.modelling.architectures import clone
from bench.modelling.training import steps_taken

if TYPE_CHECKING:
    from methods.quant.qat import Recipe


def _xnnpack():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_qat=True)), "XNNPACK quantizer"


def _litert():
    converter()  # imported quietly first
    _litert_patterns_as_modules()
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )

    return PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_qat=True)), "litert-torch PT2EQuantizer"


def _x86():
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config(is_qat=True)
    return x86.X86InductorQuantizer().set_global(config), "X86InductorQuantizer"


def _litert_patterns_as_modules() -> None:
    """litert-torch 0.10 hands its conv-bn QAT patterns to torchao's pattern exporter as
    plain functions, which torch.export (2.14) refuses ("Expected `mod` to be an instance
    of `torch.nn.Module`, got <class 'function'>"): its QAT config annotated no graph with
    a batch norm. torchao's own annotators wrap theirs in its WrapperModule; this does the
    same for litert-torch's (once, in its module)."""
    import litert_torch.quantize.pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    export = utils._get_aten_graph_module_for_pattern
    if getattr(export, "wraps_functions", False):
        return

    def as_module(pattern, example_inputs, is_cuda=False, **kwargs):
        if not isinstance(pattern, torch.nn.Module):
            pattern = WrapperModule(pattern)
        return export(pattern, example_inputs, is_cuda, **kwargs)

    as_module.wraps_functions = True
    utils._get_aten_graph_module_for_pattern = as_module


#: backend -> its QAT quantizer (and its name for the notes)
QUANTIZERS = {"executorch": _xnnpack, "litert": _litert, "torch-export": _x86, "torch-aoti": _x86}


@dataclass(frozen=True)
class Trained:
    """A converted pt2e QAT module and what training it cost (seconds, optimiser steps)."""

    module: torch.nn.Module
    seconds: float
    steps: int


class Pt2eQat:
    """A torch.export backend's realisation: pt2e QAT of the parent with the backend's
    quantizer, trained with the step's recipe when it is deployed; `shared` (one per
    step, handed to every backend's realisation) keeps the training of a quantizer that
    several backends use, so they train once."""

    def __init__(self, recipe: Recipe, backend: str, shared: dict | None = None):
        self.recipe, self.backend = recipe, backend
        self.shared = {} if shared is None else shared

    def __call__(self, artifact, float_module, env: ExportEnv, out_dir: Path) -> Realised:
        from methods.quant import pt2e

        quiet_torchao()
        quantizer, what = QUANTIZERS[self.backend]()
        litert = self.backend == "litert"
        key = (QUANTIZERS[self.backend], env.image_size, id(float_module))
        sharers = [b for b, q in QUANTIZERS.items() if q is key[0]]
        reused = key in self.shared
        if reused:
            trained = self.shared[key][0]
        else:
            trained = self.trained(float_module, quantizer, what, env.image_size, not litert)
            if len(sharers) > 1:
                self.shared[key] = (trained, float_module)  # the module kept: its id stays its own
        converted = trained.module
        note = (f"{what} pt2e QAT (per-channel symmetric int8 weights), fine-tuned with the "
                f"same recipe when deployed: its own trained scales (not recalibrated); int8 "
                f"layers: {pt2e.coverage(converted)}"
                + (f"; trained once for {' and '.join(sharers)}" if len(sharers) > 1 else ""))
        cost = {"train_steps": trained.steps, "reused_seconds": trained.seconds if reused else 0.0}
        if litert:
            from litert_torch.quantize.quant_config import QuantConfig

            path = Path(out_dir) / "model.tflite"
            convert(converted, env, path, QuantConfig(pt2e_quantizer=quantizer))
            return Realised(path, "int8", (note,), **cost)
        program = export_program(pt2e.without_unused_weights(converted), env.image_size)
        return Realised(program, "int8", (note,), **cost)

    def trained(self, float_module, quantizer, what: str, image_size: int,
                fold: bool = True) -> Trained:
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

        start, before = time.perf_counter(), steps_taken()
        batch = torch.export.Dim("batch", min=1, max=64)
        example = (torch.zeros(2, 3, image_size, image_size),)
        captured = torch.export.export(clone(float_module).train(), example,
                                       dynamic_shapes=({0: batch},)).module()
        try:
            prepared = prepare_qat_pt2e(captured, quantizer)
        except Exception as exc:  # noqa: BLE001 - litert-torch's QAT conv-bn annotation here
            raise NotApplicable(f"{what}: its QAT config fails to annotate this graph with "
                                f"this torch/torchao ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160]})") from exc
        allow_exported_model_train_eval(prepared)  # train() switches modes with .train/.eval
        self.recipe.calibrate(prepared, lambda m: m.eval())
        self.recipe.fine_tune(prepared, f"quant.qat ({self.backend})", _freeze_pt2e)
        prepared.eval()
        converted = convert_pt2e(prepared, fold_quantize=fold)
        for module in converted.modules():  # as pt2e.quantize: the graph computes inference
            module.training = False
        return Trained(converted, time.perf_counter() - start, steps_taken() - before)


def _freeze_pt2e(model) -> None:
    """torchao's documented QAT freeze: observers off, batch norm nodes in inference mode."""
    from torchao.quantization.pt2e import disable_observer

    model.apply(disable_observer)  # torchao's fake-quant classes, not torch.ao's
    for node in model.graph.nodes:
        if node.target is torch.ops.aten.batch_norm.default:
            node.args = (*node.args[:5], False, *node.args[6:])
    model.recompile()
