"""Contract tests of the torch.export-based backends (ExecuTorch, LiteRT, torch-export,
torch-aoti) on a tiny model: export, load, parity with PyTorch, native int8 that is
smaller and close, and the n/a cells with their reasons."""

import gzip

import numpy as np
import pytest
import torch

from bench import backends
from bench.backends import NotApplicable
from tests.helpers import quantized

pytestmark = pytest.mark.edge

EDGE = ["executorch", "litert", "torch-export"]
EVERY = [*EDGE, pytest.param("torch-aoti", marks=pytest.mark.slow)]  # AOTI compiles C++


def reference(artifact, x):
    with torch.no_grad():
        return artifact.module(torch.from_numpy(x)).numpy()


def deployed_predictor(name, artifact, env, out):
    backend = backends.get(name)
    out.mkdir(parents=True, exist_ok=True)
    deployed = backends.deploy(backend, artifact, out, env)
    return deployed, backend.load([str(f) for f in deployed.files], 1, "cpu", deployed.options)


@pytest.mark.parametrize("name", EVERY)
def test_fp32_deploys_runs_and_matches_pytorch(name, env, float_artifact, tmp_path):
    deployed, predict = deployed_predictor(name, float_artifact, env, tmp_path / name)
    assert deployed.precision == "fp32" and all(f.stat().st_size > 0 for f in deployed.files)
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    got, ref = predict(x), reference(float_artifact, x)
    assert got.dtype == np.float32 and got.shape == ref.shape  # batch-1 program, 5 images
    assert np.abs(got - ref).max() < 1e-4
    assert np.array_equal(predict(x[:1]), predict(x[:1]))


def test_deployed_files_are_what_the_runtimes_load(env, float_artifact, tmp_path):
    """The suffix and the bytes are the runtime's own format, not a pickle of ours."""
    pte, _ = deployed_predictor("executorch", float_artifact, env, tmp_path / "et")
    assert pte.files[0].suffix == ".pte" and pte.files[0].read_bytes()[4:8] == b"ET12"
    tfl, _ = deployed_predictor("litert", float_artifact, env, tmp_path / "lt")
    assert tfl.files[0].suffix == ".tflite" and tfl.files[0].read_bytes()[4:8] == b"TFL3"
    assert any("XNNPACK delegate took" in n for n in pte.notes)


@pytest.mark.parametrize("name", ["executorch", "litert"])
def test_static_int8_is_native_smaller_and_close(name, env, float_artifact, tiny_context, tmp_path):
    art = quantized(float_artifact, tiny_context, "quant.static")
    fp32, _ = deployed_predictor(name, float_artifact, env, tmp_path / "f")
    deployed, predict = deployed_predictor(name, art, env, tmp_path / "q")
    assert deployed.precision == "int8"
    assert "2 of 2 Conv, 1 of 1 Linear" in deployed.notes[0]  # every layer has int8 weights
    assert deployed.files[0].stat().st_size < 0.6 * fp32.files[0].stat().st_size
    x = tiny_context.calibration_images[:16].repeat(3, axis=1)
    ref = reference(float_artifact, x)
    got = predict(x)
    assert np.abs(got - ref).max() < 0.2 * np.abs(ref).max() + 0.05
    assert not np.allclose(got, ref, atol=1e-6)  # it is int8 arithmetic, not fp32


def test_dynamic_int8_rows_say_which_layers_they_cover(env, float_artifact, tiny_context, tmp_path):
    art = quantized(float_artifact, tiny_context, "quant.dynamic")
    for name in EDGE:
        deployed, predict = deployed_predictor(name, art, env, tmp_path / name)
        assert deployed.precision == "int8" and "int8 layers:" in deployed.notes[0], name
        x = tiny_context.calibration_images[:4].repeat(3, axis=1)
        ref = reference(float_artifact, x)
        assert np.abs(predict(x) - ref).max() < 0.2 * np.abs(ref).max() + 0.05, name


@pytest.mark.parametrize("name", EDGE)
def test_lower_precisions_and_cuda_are_not_applicable_with_reasons(name, env, float_artifact,
                                                                   tmp_path):
    with pytest.raises(NotApplicable, match="fp16"):
        backends.deploy(backends.get(name), float_artifact, tmp_path, env, "fp16")
    if name != "torch-export":
        env.device = "cuda"
        with pytest.raises(NotApplicable, match="cuda"):
            backends.deploy(backends.get(name), float_artifact, tmp_path, env)


def test_pruned_and_distilled_models_go_through_unchanged(env, tiny_context, float_artifact,
                                                          tmp_path):
    art = quantized(float_artifact, tiny_context, "prune.structured")
    for name in ("executorch", "litert"):
        deployed, predict = deployed_predictor(name, art, env, tmp_path / name)
        x = tiny_context.calibration_images[:3].repeat(3, axis=1)
        assert np.abs(predict(x) - reference(art, x)).max() < 1e-4
        assert len(gzip.compress(deployed.files[0].read_bytes())) > 0


def test_edge_backends_are_not_defaults_and_all_names_them():
    from bench.config.settings import _backends

    assert backends.defaults() == ["torch", "onnxruntime", "openvino"]
    everything = _backends(["all"])
    assert set(everything) == set(backends.installed())
    assert {"executorch", "litert", "torch-export", "torch-aoti"} <= set(everything)
    assert _backends(["torch", "all"])[0] == "torch" and len(set(everything)) == len(everything)


def test_an_int8_program_loads_in_a_fresh_worker_process(env, float_artifact, tiny_context,
                                                         tmp_path):
    """The worker imports nothing the bench process had: custom quantization ops included."""
    import subprocess
    import sys

    art = quantized(float_artifact, tiny_context, "quant.static")
    x = tiny_context.calibration_images[:2].repeat(3, axis=1)
    for name in EDGE:
        deployed, predict = deployed_predictor(name, art, env, tmp_path / name)
        np.save(tmp_path / "x.npy", x)
        code = ("import sys, numpy as np; from bench import backends; "
                f"p = backends.get({name!r}).load(sys.argv[1:], 1, 'cpu', {{}}); "
                f"np.save({str(tmp_path / 'y.npy')!r}, p(np.load({str(tmp_path / 'x.npy')!r})))")
        proc = subprocess.run([sys.executable, "-c", code, *map(str, deployed.files)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert np.allclose(np.load(tmp_path / "y.npy"), predict(x), atol=1e-5), name


def test_an_int8_program_holds_int8_weights_only(env, float_artifact, tiny_context, tmp_path):
    """The .pt2 of an int8 model is smaller than the fp32 one: the fp32 weights the int8
    graph replaced are not saved beside it."""
    art = quantized(float_artifact, tiny_context, "quant.static")
    fp32, _ = deployed_predictor("torch-export", float_artifact, env, tmp_path / "f")
    int8, predict = deployed_predictor("torch-export", art, env, tmp_path / "q")
    program = torch.export.load(str(int8.files[0]))
    weights = [v for v in [*program.state_dict.values(), *program.constants.values()]
               if isinstance(v, torch.Tensor) and v.dim() == 4]  # conv kernels
    assert weights and all(w.dtype == torch.int8 for w in weights)
    x = tiny_context.calibration_images[:4].repeat(3, axis=1)
    assert np.abs(predict(x) - reference(float_artifact, x)).max() < 0.2
