"""quant.qat on a tiny model: int8 on PyTorch, and the scales training learned (not a
recalibration) in the files ONNX Runtime and OpenVINO run as int8 kernels."""

import collections
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from bench import backends
from tests.helpers import assert_unchanged, quantized, snapshot


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
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


def test_qat_with_relu_runs_a_relu6_network_as_fused_int8_convolutions_on_onnxruntime(tiny_context, env,
                                                                       tmp_path):
    """With relu=true, ReLU6 becomes ReLU before QAT (as torchvision's quantizable
    MobileNetV2), so each convolution, its batch norm and activation are one QLinearConv:
    no requantizing DequantizeLinear -> Clip -> QuantizeLinear is left between them. By
    default ReLU6 stays, and so do those requantizations."""
    import onnxruntime as ort
    from torch import nn

    import methods
    from tests.helpers import TinyNet

    def optimized_ops(net, out, **relu):
        parent = methods.Artifact(name="teacher", arch="tiny", module=net.eval(),
                                  float_module=net)
        art = quantized(parent, tiny_context, "quant.qat", epochs=1.0, calibration_size=16,
                        **relu)
        deployed, _ = deploy("onnxruntime", art, env, out)
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(out / "optimized.onnx")
        ort.InferenceSession(str(deployed.files[0]), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
        return art, collections.Counter(n.op_type for n in graph.node)

    torch.manual_seed(0)
    relu6 = TinyNet()
    relu6.features[2], relu6.features[5] = nn.ReLU6(), nn.ReLU6()
    art, ops = optimized_ops(relu6, tmp_path / "relu6", relu=True)
    assert not any(isinstance(m, nn.ReLU6) for m in art.module.modules())
    assert "ReLU6 replaced by ReLU" in art.notes[-1]
    assert any(isinstance(m, nn.ReLU6) for m in relu6.modules())  # the parent is left alone
    assert ops["QLinearConv"] == 2 and "Clip" not in ops, ops
    _, relu_ops = optimized_ops(TinyNet(), tmp_path / "relu")
    assert ops == relu_ops  # the same int8 graph as a network built with ReLU
    _, kept = optimized_ops(relu6, tmp_path / "kept")  # the default keeps ReLU6
    assert kept["Clip"] == 2 and kept["QLinearConv"] == 2, kept


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
    import methods

    key, value = bad.split("=")
    ((step,),) = methods.expand(f"quant.qat:{bad}")  # parses: the value is a number
    with pytest.raises(ValueError, match=f"quant.qat: {key} must") as err:
        methods.get("quant.qat")().apply(tiny_teacher, tiny_context, **dict(step.params))
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.edge
@pytest.mark.parametrize("name", ["executorch", "torch-export"])
def test_edge_backends_train_their_own_quantizer(name, qat, env, tmp_path, tiny_data):
    deployed, predict = deploy(name, qat, env, tmp_path / name)
    assert deployed.precision == "int8"
    assert "pt2e QAT" in deployed.notes[0] and "2 of 2 Conv, 1 of 1 Linear" in deployed.notes[0]
    x = tiny_data.test.images[:4].repeat(3, axis=1)
    with torch.no_grad():
        ref = qat.float_module(torch.from_numpy(x)).numpy()
    assert np.abs(predict(x) - ref).max() < 0.2 * np.abs(ref).max() + 0.05


@pytest.mark.edge
def test_litert_qat_is_deployed_or_says_why(qat, env, tmp_path):
    from bench.backends import NotApplicable

    pytest.importorskip("litert_torch")
    try:
        deployed, _ = deploy("litert", qat, env, tmp_path / "litert")
    except NotApplicable as exc:
        assert "PT2EQuantizer" in str(exc) and "\n" not in str(exc)
    else:
        assert deployed.precision == "int8"
