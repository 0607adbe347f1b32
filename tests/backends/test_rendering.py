"""A deployed int8 file that exports a PyTorch int8 model as it is (quant.qat's QDQ
export) is checked against that model: a runtime computing other logits fails the row in
one line (issue 29: OpenVINO's convert_model changed a QDQ graph's results)."""

import numpy as np
import pytest

from bench import backends
from bench.backends import rendering
from tests.helpers import quantized


@pytest.fixture
def qat(tiny_teacher, tiny_context):
    return quantized(tiny_teacher, tiny_context, "quant.qat", epochs=1.0, calibration_size=16)


def test_relative_rms_is_zero_for_the_same_logits_and_about_one_for_unrelated_ones():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 2))
    assert rendering.relative_rms(ref, ref) == 0.0
    assert rendering.relative_rms(ref + 0.01, ref) == pytest.approx(0.01 / ref.std(), rel=0.05)
    assert 1.2 < rendering.relative_rms(rng.normal(size=(500, 2)), ref) < 1.6


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_the_qdq_export_is_checked_against_the_int8_model_and_passes(qat, env, tmp_path, name,
                                                                       monkeypatch):
    seen = []
    check = rendering.check
    monkeypatch.setattr(rendering, "check", lambda *a: seen.append(check(*a)) or seen[-1])
    out = tmp_path / name / name
    out.mkdir(parents=True)
    backends.deploy(backends.get(name), qat, out, env)
    assert len(seen) == 1 and seen[0] < rendering.TOLERANCE / 2  # the same int8 arithmetic


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_a_runtime_computing_other_logits_fails_in_one_line(qat, env, tmp_path, name,
                                                             monkeypatch):
    backend = backends.get(name)
    load = type(backend).load

    def wrong(self, *args, **kwargs):  # a runtime that gets every logit 30% wrong
        predict = load(self, *args, **kwargs)
        return lambda x: predict(x) * 1.3

    monkeypatch.setattr(type(backend), "load", wrong)
    out = tmp_path / name / name
    out.mkdir(parents=True)
    with pytest.raises(rendering.RenderingError) as err:
        backends.deploy(backend, qat, out, env)
    assert str(err.value).startswith(f"parity: {name} computes other logits than the "
                                     "PyTorch int8 model it deploys")
    assert "\n" not in str(err.value)


def test_float_models_and_other_int8_realisations_are_not_checked(tiny_teacher, tiny_context,
                                                                   env, tmp_path, monkeypatch):
    monkeypatch.setattr(rendering, "check", lambda *a: pytest.fail("checked"))
    static = quantized(tiny_teacher, tiny_context, "quant.static")
    for art, where in ((tiny_teacher, "float"), (static, "static")):
        out = tmp_path / where / "onnxruntime"
        out.mkdir(parents=True)
        backends.deploy(backends.get("onnxruntime"), art, out, env)
