"""The precision rule (bench.modelling.precision): bf16 autocast only where it is faster
(a CPU with AMX or AVX512-BF16, an architecture without depthwise convolutions), fp32
for quantization-aware training, and a tiny model's AUC unchanged by it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.modelling import precision, training
from bench.modelling.training_rule import TrainSettings
from tests.helpers import TinyNet


def _depthwise() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8))


def test_bf16_only_where_the_rule_says_it_is_faster():
    assert precision.autocast_dtype(TinyNet(), "cpu", bf16_cpu=True) is torch.bfloat16
    assert precision.autocast_dtype(TinyNet(), "cpu", bf16_cpu=False) is None
    assert precision.autocast_dtype(_depthwise(), "cpu", bf16_cpu=True) is None  # MobileNet
    assert precision.autocast_dtype(nn.Linear(4, 2), "cpu", bf16_cpu=True) is None  # no conv
    qat = nn.Sequential(TinyNet(), torch.ao.quantization.FakeQuantize())
    assert precision.autocast_dtype(qat, "cpu", bf16_cpu=True) is None
    assert precision.autocast_dtype(TinyNet(), "cuda") is torch.float16
    assert precision.name(None) == "fp32" and precision.name(torch.bfloat16) == "bf16 autocast"


@pytest.mark.parametrize("flags, expected", [("fpu sse avx512f amx_bf16 amx_tile", True),
                                             ("fpu sse avx512f avx512_bf16", True),
                                             ("fpu sse avx2", False)])
def test_the_cpu_probe_reads_its_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert precision.cpu_has_bf16(str(cpuinfo)) is expected
    assert precision.cpu_has_bf16(str(tmp_path / "absent")) is False


def test_qat_settings_and_the_switch_keep_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert training.trained_in(TinyNet(), TrainSettings(epochs=1)) is torch.bfloat16
    assert training.trained_in(TinyNet(), TrainSettings(epochs=1, mixed_precision=False)) is None


def test_a_tiny_models_auc_is_unchanged_by_bf16(tiny_data, monkeypatch):
    def trained(bf16: bool) -> float:
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: bf16)
        torch.manual_seed(0)
        model = training.train(TinyNet(), tiny_data.train.images, tiny_data.train.labels,
                               tiny_data.task, TrainSettings(epochs=4, lr=5e-3), "tiny")
        return training.auc_of(model, tiny_data.task, tiny_data.test.images,
                               tiny_data.test.labels)

    fp32, bf16 = trained(False), trained(True)
    assert abs(bf16 - fp32) <= 0.05, (fp32, bf16)


def test_fast_passes_score_under_the_rules_autocast_and_reported_ones_in_fp32(tiny_data,
                                                                              monkeypatch):
    """`fast` passes (soft targets, early-stop scores) run under the autocast the model
    trains in; the default pass, which reported figures use, stays fp32; and the tiny
    model's AUC from a fast pass is the fp32 one within bf16's rounding."""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    seen = []

    class Recording(TinyNet):
        def forward(self, x):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                        else None)
            return super().forward(x)

    torch.manual_seed(0)
    model = training.train(Recording(), tiny_data.train.images, tiny_data.train.labels,
                           tiny_data.task, TrainSettings(epochs=4, lr=5e-3), "tiny")
    images, labels = tiny_data.test.images, tiny_data.test.labels
    seen.clear()
    exact = training.auc_of(model, tiny_data.task, images, labels)
    assert set(seen) == {None}
    seen.clear()
    fast = training.auc_of(model, tiny_data.task, images, labels, fast=True)
    assert set(seen) == {torch.bfloat16}
    assert training.predict_logits(model, images, fast=True).dtype is torch.float32
    assert abs(fast - exact) <= 0.02, (exact, fast)
    assert training.scoring_dtype(_depthwise()) is None  # MobileNet-like: fp32
    training.use_precision("fp32")
    try:
        assert training.scoring_dtype(model) is None
    finally:
        training.use_precision("auto")


def test_train_precision_fp32_turns_the_rule_off(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    try:
        training.use_precision("fp32")
        assert training.trained_in(TinyNet(), TrainSettings(epochs=1)) is None
        training.use_precision("auto")
        assert training.trained_in(TinyNet(), TrainSettings(epochs=1)) is torch.bfloat16
        with pytest.raises(ValueError, match="--train-precision 'bf16'"):
            training.use_precision("bf16")
    finally:
        training.use_precision("auto")


def test_train_precision_is_a_run_option():
    from bench import cli
    from bench.config import settings

    cfg = settings.build(cli._parser().parse_args(["run", "--train-precision", "fp32"]))
    assert cfg.training.precision == "fp32"
    assert settings.build(cli._parser().parse_args(["run"])).training.precision == "auto"
