"""Contract tests per backend, on a tiny model: export, load, agree with PyTorch."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import backends
from bench.backends import NotApplicable
from tests.helpers import quantized


def x_batch(n=8):
    return np.random.default_rng(0).standard_normal((n, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_fp32_export_runs_and_matches_pytorch(name, env, float_artifact, tmp_path):
    backend = backends.get(name)
    out = tmp_path / name
    out.mkdir()
    deployed = backends.deploy(backend, float_artifact, out, env)
    assert deployed.precision == "fp32" and all(f.exists() for f in deployed.files)
    predict = backend.load([str(f) for f in deployed.files], 1, "cpu", deployed.options)
    x = x_batch()
    with torch.no_grad():
        ref = float_artifact.module(torch.from_numpy(x)).numpy()
    got = predict(x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-4  # f32 really is f32 (bf16 would be ~1e-2)
    assert np.array_equal(predict(x[:1]), predict(x[:1]))


@pytest.mark.parametrize("name,precision", [("torch", "bf16"), ("torch", "fp16"),
                                            ("onnxruntime", "fp16"), ("openvino", "bf16")])
def test_lower_precision_variant_runs_in_that_precision(name, precision, env, float_artifact, tmp_path):
    backend = backends.get(name)
    if name == "openvino" and not _openvino_has(precision):
        # a CPU without bf16 arithmetic (an AMD EPYC of the Zen 3 kind): the row is n/a
        # and says why, rather than a bf16 row that really ran in f32
        with pytest.raises(NotApplicable, match=precision):
            backends.deploy(backend, float_artifact, tmp_path, env, precision)
        return
    deployed = backends.deploy(backend, float_artifact, tmp_path, env, precision)
    assert deployed.precision == precision and deployed.notes
    predict = backend.load([str(f) for f in deployed.files], 1, "cpu", deployed.options)
    x = x_batch()
    with torch.no_grad():
        ref = float_artifact.module(torch.from_numpy(x)).numpy()
    got = predict(x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    diff = np.abs(got - ref).max()
    # close to fp32, yet not fp32: the rounding of a 16-bit format shows
    assert 1e-6 < diff < 0.1 * np.abs(ref).max() + 1e-2


def _openvino_has(precision: str) -> bool:
    import openvino as ov

    return precision.upper() in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_lower_precision_not_applicable_says_why(env, float_artifact, tmp_path):
    with pytest.raises(NotApplicable, match="bf16"):
        backends.deploy(backends.get("onnxruntime"), float_artifact, tmp_path, env, "bf16")
    import openvino as ov

    if "FP16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(NotApplicable, match="fp16"):
            backends.deploy(backends.get("openvino"), float_artifact, tmp_path, env, "fp16")


def test_openvino_saves_fp32_weights(env, float_artifact, tmp_path):
    deployed = backends.deploy(backends.get("openvino"), float_artifact, tmp_path, env)
    # BatchNorm folds into the convolutions; conv and linear weights remain, 4 bytes each
    n_weights = sum(m.weight.numel() for m in float_artifact.module.modules()
                    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert deployed.files[1].suffix == ".bin"
    assert deployed.files[1].stat().st_size >= 4 * n_weights  # fp16 would be half


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_static_int8_is_native_smaller_and_close(name, env, float_artifact, tiny_context, tmp_path):
    art = quantized(float_artifact, tiny_context, "quant.static")
    backend = backends.get(name)
    fp32 = backends.deploy(backend, float_artifact, tmp_path, env)
    out = tmp_path / "q"
    out.mkdir()
    deployed = backends.deploy(backend, art, out, env)
    assert deployed.precision == "int8" and deployed.notes
    # the weights file: ONNX's only file, OpenVINO's .bin (its .xml graph dominates a tiny net)
    assert deployed.files[-1].stat().st_size < 0.6 * fp32.files[-1].stat().st_size
    predict = backend.load([str(f) for f in deployed.files], 1, "cpu", deployed.options)
    x = tiny_context.calibration_images[:16].repeat(3, axis=1)
    with torch.no_grad():
        ref = float_artifact.module(torch.from_numpy(x)).numpy()
    assert np.abs(predict(x) - ref).max() < 0.2 * np.abs(ref).max() + 0.05


def test_onnxruntime_dynamic_says_it_only_quantizes_matmul(env, float_artifact, tiny_context, tmp_path):
    import onnx

    art = quantized(float_artifact, tiny_context, "quant.dynamic")
    deployed = backends.deploy(backends.get("onnxruntime"), art, tmp_path, env)
    ops = {n.op_type for n in onnx.load(str(deployed.files[0])).graph.node}
    assert "Conv" in ops and "ConvInteger" not in ops
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear"}
    assert "MatMul/Gemm" in deployed.notes[0]


def test_openvino_dynamic_is_not_applicable_with_reason(env, float_artifact, tiny_context, tmp_path):
    art = quantized(float_artifact, tiny_context, "quant.dynamic")
    with pytest.raises(NotApplicable, match="no dynamic int8"):
        backends.deploy(backends.get("openvino"), art, tmp_path, env)


def test_cuda_without_provider_is_not_applicable(env, float_artifact, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    env.device = "cuda"
    with pytest.raises(NotApplicable, match="no CUDA provider"):
        backends.deploy(backends.get("onnxruntime"), float_artifact, tmp_path, env)


def test_one_onnx_export_per_float_model(env, float_artifact):
    assert env.float_onnx(float_artifact.module) == env.float_onnx(float_artifact.module)
    assert len(list((env.work_dir / "onnx").iterdir())) == 1


def test_telemetry_is_switched_off_by_the_bench():
    code = ("from bench.backends import telemetry; telemetry.switch_off(); "
            "import nncf, openvino, sys; from nncf.telemetry import telemetry as t; "
            "from unittest.mock import MagicMock; "
            "import openvino.tools.ovc.convert_impl as ci; "
            "ok = isinstance(t, MagicMock) and sys.modules['openvino_telemetry'] is None "
            "and ci.tm.__name__.endswith('telemetry_stub'); sys.exit(0 if ok else 1)")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CI", "NNCF_CI")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_torchscript_file_holds_the_model_not_the_harness_call_stack(env, float_artifact, tmp_path):
    """The deployed TorchScript has no debug records (the tracer's Python call stack, which
    made the file's size depend on the bench's own source), and still predicts the same."""
    import zipfile

    deployed = backends.deploy(backends.get("torch"), float_artifact, tmp_path, env)
    names = zipfile.ZipFile(deployed.files[0]).namelist()
    assert names and not any(n.endswith(".debug_pkl") for n in names)
    assert not any(b"bench/" in zipfile.ZipFile(deployed.files[0]).read(n) for n in names
                   if "/code/" in n)
    predict = backends.get("torch").load([str(deployed.files[0])], 1)
    x = x_batch()
    with torch.no_grad():
        assert np.abs(predict(x) - float_artifact.module(torch.from_numpy(x)).numpy()).max() < 1e-5
    assert list(tmp_path.iterdir()) == [deployed.files[0]]  # no temporary folder left


def test_static_int8_settings_reach_every_backend(env, float_artifact, tiny_context, tmp_path):
    """calibration_size and per_channel are the step's, on each backend, not only torch's:
    the ONNX weights' scales are one per output channel, or one per tensor."""
    import onnx
    from onnx import numpy_helper

    def weight_scale_sizes(settings):
        art = quantized(float_artifact, tiny_context, "quant.static", **settings)
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        out.mkdir()
        deployed = backends.deploy(backends.get("onnxruntime"), art, out, env)
        graph = onnx.load(str(deployed.files[0])).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
        sizes = [inits[n.input[1]].size for n in graph.node
                 if n.op_type == "DequantizeLinear" and n.output[0] in conv_weights]
        return sizes, deployed.notes[0], art

    sizes, note, _ = weight_scale_sizes({"calibration_size": 8})
    assert sizes and all(s > 1 for s in sizes) and "calibrated on 8 training images" in note
    sizes, note, art = weight_scale_sizes({"per_channel": False})
    assert sizes and all(s == 1 for s in sizes) and "per-tensor" in note
    assert "per-tensor" in art.notes[0]
    ov = backends.deploy(backends.get("openvino"), art, tmp_path / "ov", env)
    assert "per-tensor weights" in ov.notes[0]


def test_a_realisation_is_timed_and_a_float_export_is_not(env, float_artifact, tiny_context,
                                                          tmp_path):
    """What a method's realisation does when deployed (ONNX Runtime's calibration here) is
    the row's cost: deploy times it. A float model is only exported, as every model is."""
    backend = backends.get("onnxruntime")
    (tmp_path / "f").mkdir()
    (tmp_path / "q").mkdir()
    fp32 = backends.deploy(backend, float_artifact, tmp_path / "f", env)
    assert (fp32.seconds, fp32.train_steps) == (0.0, 0)
    art = quantized(float_artifact, tiny_context, "quant.static")
    int8 = backends.deploy(backend, art, tmp_path / "q", env)
    assert int8.seconds > 0 and int8.train_steps == 0  # calibration trains nothing
