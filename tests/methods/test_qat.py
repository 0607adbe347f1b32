"""quant.qat on a tiny model: int8 on PyTorch, and the scales training learned (not a
recalibration) in the files ONNX Runtime and OpenVINO run as int8 kernels, and in the
programs the edge runtimes run (their own pt2e QAT, trained once per quantizer)."""

import collections

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from bench import backends, deprecated
from tests.helpers import TinyNet, assert_unchanged, quantized, snapshot


@pytest.fixture
def qat(tiny_teacher, tiny_context):
    return quantized(tiny_teacher, tiny_context, "quant.qat", epochs=2.0, calibration_size=16)


def torch_scales(module) -> set[float]:
    """The activation scales of an FX int8 module: its quantized layers' output scales and
    the quantize nodes' input scales."""
    scales = {float(m.scale) for m in module.modules() if hasattr(m, "scale") and
              type(m).__module__.startswith("torch.ao.nn")}
    scales |= {float(v) for k, v in module.state_dict().items() if k.endswith("_scale_0")}
    return {round(s, 9) for s in scales}


def onnx_scales(path) -> set[float]:
    """The scales of an ONNX file's QuantizeLinear nodes (activations)."""
    model = onnx.load(str(path))
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return {round(float(values[n.input[1]]), 9) for n in model.graph.node
            if n.op_type == "QuantizeLinear"}


def deploy(name, art, env, out):
    out.mkdir(parents=True, exist_ok=True)
    backend = backends.get(name)
    deployed = backends.deploy(backend, art, out, env)
    return deployed, backend.load([str(f) for f in deployed.files], 1, "cpu", deployed.options)


def test_qat_is_int8_trained_and_leaves_its_parent_alone(tiny_teacher, tiny_context, tiny_data):
    before = snapshot(tiny_teacher.module)
    art = quantized(tiny_teacher, tiny_context, "quant.qat", epochs=2.0, calibration_size=16)
    assert_unchanged(tiny_teacher.module, before)
    assert art.precision == "int8" and set(art.realisations) == set(backends.names())
    kinds = {type(m).__module__ for m in art.module.modules()}
    assert "torch.ao.nn.intrinsic.quantized.modules.conv_relu" in kinds  # int8 Conv+ReLU
    assert "torch.ao.nn.quantized.modules.linear" in kinds
    assert art.float_module is tiny_teacher.module
    assert "QAT fine-tuned 6 steps from teacher (alpha 0.5, T 4.0" in art.notes[0]
    # batch norm as trained (frozen), not reset by the training loop's re-estimation
    x = torch.from_numpy(tiny_data.test.images[:32]).expand(-1, 3, -1, -1)
    with torch.no_grad():
        ref, got = tiny_teacher.module(x), art.module(x)
    assert (ref - got).abs().max() < 0.25 * ref.abs().max() + 0.05


def test_training_moves_the_scales_away_from_their_initial_observation(qat, tiny_teacher):
    from torch.ao.quantization.quantize_fx import convert_fx

    from methods.quant.qat import prepare_fx

    recipe = qat.realisations["executorch"].recipe  # the step's own recipe, before training
    with deprecated.silenced("fx-quantization"):
        initial = convert_fx(prepare_fx(tiny_teacher.float_module, recipe, 16).eval())
    assert torch_scales(initial) != torch_scales(qat.module)


def test_onnxruntime_runs_the_trained_scales_as_int8_kernels(qat, env, tmp_path, tiny_data):
    import onnxruntime as ort

    deployed, predict = deploy("onnxruntime", qat, env, tmp_path / "ort")
    assert deployed.precision == "int8" and "trained scales" in deployed.notes[0]
    path = deployed.files[0]
    assert onnx_scales(path) and onnx_scales(path) <= torch_scales(qat.module)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    assert ops["QLinearConv"] == 2 and ops["QGemm"] == 1 and "Conv" not in ops
    x = tiny_data.test.images[:8].repeat(3, axis=1)
    with torch.no_grad():
        ref = qat.module(torch.from_numpy(x)).numpy()
    assert np.abs(predict(x) - ref).max() < 1e-5  # the same int8 arithmetic


def _relu6_net():
    from torch import nn

    torch.manual_seed(0)
    net = TinyNet()
    net.features[2], net.features[5] = nn.ReLU6(), nn.ReLU6()
    return net


def _qat_ops(net, tiny_context, env, out, **params):
    """quant.qat of `net`, and the op counts of ONNX Runtime's optimised graph of its QDQ export."""
    import onnxruntime as ort

    import methods

    parent = methods.Artifact(name="teacher", arch="tiny", module=net.eval(), float_module=net)
    art = quantized(parent, tiny_context, "quant.qat", epochs=1.0, calibration_size=16, **params)
    deployed, _ = deploy("onnxruntime", art, env, out)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(out / "optimized.onnx")
    ort.InferenceSession(str(deployed.files[0]), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return art, collections.Counter(n.op_type for n in graph.node)


def test_relu6_by_default_is_relu_fused_into_its_convolution_with_the_range_fixed_to_0_6(
        tiny_context, env, tmp_path):
    """relu6=range: each convolution, its batch norm and ReLU6 become one QLinearConv on
    ONNX Runtime (the graph of a network built with ReLU), and still compute ReLU6: the
    fused op's int8 output is uint8 on [0, 6] (scale 6/255, zero point 0), so 6 is where
    it saturates. The image itself keeps a learned range."""
    from torch import nn

    net = _relu6_net()
    art, ops = _qat_ops(net, tiny_context, env, tmp_path / "range")
    assert ops["QLinearConv"] == 2 and "Clip" not in ops, ops
    assert "range fixed to [0, 6]" in art.notes[-1]
    assert any(isinstance(m, nn.ReLU6) for m in net.modules())  # the parent is left alone
    fused = [m for m in art.module.modules() if type(m).__name__ == "ConvReLU2d"]
    assert len(fused) == 2
    for m in fused:
        assert float(m.scale) == pytest.approx(6 / 255) and int(m.zero_point) == 0
    assert 6 / 255 not in {round(float(v), 9) for k, v in art.module.state_dict().items()
                           if k.endswith("_scale_0")}  # the input quantizer learned its own
    _, relu_ops = _qat_ops(TinyNet(), tiny_context, env, tmp_path / "relu-net")
    assert ops == relu_ops  # the same int8 graph as a network built with ReLU


def test_relu6_clip_keeps_the_requantizing_clip_and_relu6_relu_drops_the_clip(
        tiny_context, env, tmp_path):
    from torch import nn

    art, relu = _qat_ops(_relu6_net(), tiny_context, env, tmp_path / "relu", relu6="relu")
    assert not any(isinstance(m, nn.ReLU6) for m in art.module.modules())
    assert "ReLU6 replaced by ReLU" in art.notes[-1]
    assert relu["QLinearConv"] == 2 and "Clip" not in relu, relu
    fused = [m for m in art.module.modules() if type(m).__name__ == "ConvReLU2d"]
    assert fused and all(float(m.scale) != pytest.approx(6 / 255) for m in fused)  # learned
    _, kept = _qat_ops(_relu6_net(), tiny_context, env, tmp_path / "clip", relu6="clip")
    assert kept["Clip"] == 2 and kept["QLinearConv"] == 2, kept


def test_fold_fuses_only_the_relu6_that_follow_a_convolution():
    import torchvision
    from torch import nn

    from methods.quant import relu6

    net = torchvision.models.mobilenet_v2(num_classes=2)
    names = relu6.fold(net)
    assert len(names) == 35 and names[:2] == ["features.0.0", "features.1.conv.0.0"]
    assert not any(isinstance(m, nn.ReLU6) for m in net.modules())
    other = nn.Sequential(nn.Linear(4, 4), nn.ReLU6(), nn.Conv2d(3, 3, 1), nn.ReLU6())
    assert relu6.fold(other) == ["2"]
    assert isinstance(other[1], nn.ReLU6) and isinstance(other[3], nn.ReLU)


def test_openvino_runs_the_trained_scales_as_int8_kernels(qat, env, tmp_path, tiny_data):
    import openvino as ov

    deployed, predict = deploy("openvino", qat, env, tmp_path / "ov" / "openvino")
    assert deployed.precision == "int8" and "FakeQuantize" in deployed.notes[0]
    (source,) = (env.work_dir / "onnx").glob("*-qat.onnx")  # what OpenVINO read
    assert onnx_scales(source) and onnx_scales(source) <= torch_scales(qat.module)
    compiled = ov.Core().compile_model(str(deployed.files[0]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    precisions = {(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
                  for op in compiled.get_runtime_model().get_ordered_ops()}
    conv = {p for kind, p in precisions if kind == "Convolution"}
    assert conv and conv <= {"u8", "i8"}
    x = tiny_data.test.images[:8].repeat(3, axis=1)
    with torch.no_grad():
        ref = qat.module(torch.from_numpy(x)).numpy()
    assert np.abs(predict(x) - ref).max() < 1e-4


@pytest.mark.parametrize("bad", ["epochs=0", "lr=-1", "alpha=1.5", "temperature=0",
                                 "calibration_size=0"])
def test_bad_parameters_are_one_line_errors(bad, tiny_teacher, tiny_context):
    """Refused with --methods, by the declared bounds; and by `apply` too, for a value
    given in code."""
    import methods

    key, value = bad.split("=")
    with pytest.raises(ValueError, match=f"parameter {key}: .* is not in "):
        methods.expand(f"quant.qat:{bad}")
    cls = methods.get("quant.qat")
    params = {p.name: p.default for p in cls.params} | {key: cls.param(key).type(value)}
    with pytest.raises(ValueError, match=f"quant.qat: {key} must") as err:
        cls().apply(tiny_teacher, tiny_context, **params)
    assert "\n" not in str(err.value)


def pt2e_scales(graph_module) -> set[float]:
    """The activation scales of a pt2e graph (its quantize_per_tensor nodes'), to 6
    decimals: what flatc prints of XNNPACK's."""
    return {round(float(n.args[1]), 6) for n in graph_module.graph.nodes
            if n.op == "call_function" and ".quantize_per_tensor." in str(n.target)}


def xnnpack_scales(pte) -> set[float]:
    """The per-tensor scales of the XNNPACK delegate in a .pte (its flatbuffer read back
    as JSON by ExecuTorch's own flatc, with XNNPACK's schema)."""
    import json
    import re
    import tempfile
    from pathlib import Path

    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (
        XNNHeader,
        _get_schema_bytes,
    )
    from executorch.exir._serialize._flatbuffer import _flatc_decompile
    from executorch.exir._serialize._program import deserialize_pte_binary

    (delegate,) = deserialize_pte_binary(Path(pte).read_bytes()).program.backend_delegate_data
    header = XNNHeader.from_bytes(delegate.data[:XNNHeader.EXPECTED_LENGTH])
    graph = delegate.data[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "schema.fbs").write_bytes(_get_schema_bytes())
        (Path(tmp) / "graph.bin").write_bytes(graph)
        _flatc_decompile(tmp, str(Path(tmp) / "schema.fbs"), str(Path(tmp) / "graph.bin"))
        text = re.sub(r"\binf\b", "Infinity", (Path(tmp) / "graph.json").read_text())
    return {round(v["xvalue_union"]["quant_params"]["scale"], 6)
            for v in json.loads(text)["xvalues"]
            if v["xvalue_union_type"] == "XNNQuantizedTensorValue"
            and v["xvalue_union"]["quant_params_type"] == "PerTensorQuant"}


def tflite_scales(path) -> set[float]:
    """The per-tensor scales of a .tflite's int8 tensors, as LiteRT's interpreter reads them."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return {round(float(t["quantization_parameters"]["scales"][0]), 6) for t in details
            if t["dtype"] == np.int8 and len(t["quantization_parameters"]["scales"]) == 1}


def program_scales(path) -> set[float]:
    return pt2e_scales(torch.export.load(str(path)).graph_module)


DEPLOYED_SCALES = {"executorch": xnnpack_scales, "torch-export": program_scales,
                   "litert": tflite_scales}


@pytest.mark.slow
@pytest.mark.edge
@pytest.mark.parametrize("name", list(DEPLOYED_SCALES))
def test_edge_backends_deploy_the_scales_their_own_qat_trained(name, qat, env, tmp_path,
                                                               monkeypatch):
    """The program each edge runtime runs holds the activation scales of the pt2e QAT it
    trained when deployed, every one of them (a recalibrated or post-training program has
    others), and its row costs that training."""
    from methods.quant.qat_pt2e import Pt2eQat

    if name == "litert":
        pytest.importorskip("litert_torch")
    made, train = [], Pt2eQat.trained
    monkeypatch.setattr(Pt2eQat, "trained",
                        lambda self, *a, **k: made.append(train(self, *a, **k)) or made[-1])
    deployed, predict = deploy(name, qat, env, tmp_path / name)
    assert deployed.precision == "int8" and "2 of 2 Conv, 1 of 1 Linear" in deployed.notes[0]
    (trained,) = made
    expected = pt2e_scales(trained.module)
    assert len(expected) >= 3 and DEPLOYED_SCALES[name](deployed.files[0]) == expected
    assert deployed.train_steps == qat.realisations[name].recipe.steps and deployed.seconds > 0
    x = np.zeros((1, 3, 16, 16), np.float32)
    assert predict(x).shape == (1, 2)


@pytest.mark.edge
def test_torch_export_and_torch_aoti_train_one_qat_and_each_row_costs_it(qat, env, tmp_path):
    """One X86Inductor pt2e QAT per step, shared by torch-export and torch-aoti; each
    realisation reports its steps, the second the seconds of the training it reuses."""
    from bench.modelling.training import steps_taken

    steps = qat.realisations["torch-export"].recipe.steps
    float_module = qat.float_module.eval()
    before = steps_taken()
    first = qat.realisations["torch-export"](qat, float_module, env, tmp_path / "export")
    second = qat.realisations["torch-aoti"](qat, float_module, env, tmp_path / "aoti")
    assert steps_taken() - before == steps  # trained once
    assert first.train_steps == second.train_steps == steps
    assert first.reused_seconds == 0 and second.reused_seconds > 0
    assert pt2e_scales(first.graph.graph_module) == pt2e_scales(second.graph.graph_module)
