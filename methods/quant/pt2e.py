"""What the two edge realisations share: PyTorch 2 export quantization (pt2e).

ExecuTorch's XNNPACK quantizer and LiteRT's PT2EQuantizer both annotate a graph captured
by torch.export; torchao's `prepare_pt2e` inserts observers, the run's calibration
subset goes through once, and `convert_pt2e` leaves quantize/dequantize pairs around the
int8 weights that each runtime's lowering turns into int8 kernels.
"""

from __future__ import annotations

import torch

from bench.backends import ExportEnv, Realised
from bench.backends.torch_export import export_program, quiet_torchao

CALIBRATION_BATCH = 16
_CONV = {"conv1d", "conv2d", "conv3d", "convolution", "conv_transpose2d"}
_LINEAR = {"linear"}


def quantize(float_module: torch.nn.Module, quantizer, env: ExportEnv,
             fold: bool = True) -> torch.nn.Module:
    """Calibrated (static) or observer-free (dynamic) pt2e quantization of a float module.

    The graph is captured with a dynamic batch so the calibration subset goes through in
    batches of 16 (128 DenseNet-121 images: 1.7 s, against minutes one by one); the
    caller exports the result again at batch 1, as the edge runtimes run it. `fold=False`
    keeps the weights' quantize nodes, as litert-torch's converter expects."""
    quiet_torchao()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = torch.zeros(2, 3, env.image_size, env.image_size)
    batch = torch.export.Dim("batch", min=1, max=CALIBRATION_BATCH)
    with torch.no_grad():
        captured = torch.export.export(float_module.eval(), (example,),
                                       dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for images in env.calibration_batches(CALIBRATION_BATCH):
            prepared(torch.from_numpy(images))
    converted = convert_pt2e(prepared, fold_quantize=fold)
    # The graph was captured from an eval-mode model, so it computes inference already;
    # an exported module refuses .eval(), and litert-torch warns on the flag it leaves.
    for module in converted.modules():
        module.training = False
    return converted


def realise(float_module, env: ExportEnv, quantizer, what: str, dynamic: bool,
            per_channel: bool = True) -> Realised:
    """The int8 ExportedProgram (batch 1) of `float_module` by `quantizer`, and its row's
    note: `what` made it, how it was calibrated, which layers got int8 weights."""
    converted = quantize(float_module, quantizer, env)
    how = ("dynamic int8 (per-channel weights, activations quantized per call)" if dynamic
           else f"static int8 ({'per-channel' if per_channel else 'per-tensor'} weights) "
                f"calibrated on {len(env.calibration)} "
                "training images")
    program = export_program(without_unused_weights(converted), env.image_size)
    return Realised(program, "int8", (f"{what} {how}; int8 layers: {coverage(converted)}",))


def coverage(converted: torch.nn.Module) -> str:
    """Which layers ended up with int8 weights, in words: 'N of M Conv, K of L Linear'.

    A layer counts when its weight reaches it through a dequantize node, i.e. the
    quantizer annotated it; the rest stay fp32."""
    counts = {"Conv": [0, 0], "Linear": [0, 0]}
    for node in converted.graph.nodes:
        if node.op != "call_function" or not hasattr(node.target, "__name__"):
            continue
        op = node.target.__name__.split(".")[0]
        kind = "Conv" if op in _CONV else "Linear" if op in _LINEAR else None
        if kind is None or len(node.args) < 2:
            continue
        counts[kind][1] += 1
        weight = node.args[1]
        if isinstance(weight, torch.fx.Node) and "dequantize" in str(weight.target):
            counts[kind][0] += 1
    return ", ".join(f"{q} of {n} {kind}" for kind, (q, n) in counts.items() if n)


def without_unused_weights(converted: torch.nn.Module) -> torch.nn.Module:
    """Drop the parameters and buffers the int8 graph no longer reads.

    convert_pt2e leaves each layer's fp32 weight (and the folded batch norms) on the
    module beside the int8 constant that replaced it, and torch.export lifts every
    parameter of a module into the program: a saved .pt2 held both (37.2 MiB for
    DenseNet-121 "int8" against 28.5 MiB fp32). ExecuTorch's and LiteRT's lowerings drop
    them on their own; a plain ExportedProgram does not."""
    converted.graph.eliminate_dead_code()
    used = {node.target for node in converted.graph.nodes if node.op == "get_attr"}
    for name, _ in [*converted.named_parameters(), *converted.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(converted.get_submodule(owner) if owner else converted, leaf)
    converted.recompile()
    return converted
