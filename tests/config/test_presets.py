"""Presets: what they set, that the user wins, and each one's quick run on embedded data."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import _parser
from bench.config import presets, settings


def _built(*argv):
    return settings.build(_parser().parse_args(["run", *argv]))


def test_preset_fills_the_paper_setup_and_the_user_wins():
    a = _built("--preset", "chexpert-kd")
    assert a.data.dataset == "chexpert-v1.0-small" and a.data.uncertainty == "u-ones"
    assert a.data.labels == list(presets.CHEXPERT_LABELS)
    assert a.data.image_size == 224 and a.seeds == [0, 1, 2]
    assert a.methods.spec == "kd:alpha=0.3,temperature=6"  # 0.7 on the hard loss = 0.3 on KD
    b = _built("--preset", "chexpert-kd", "--dataset", "synthetic", "--seed", "0",
               "--image-size", "64")
    assert b.data.task == "multilabel" and b.data.num_classes == 5 and b.data.labels is None
    assert b.seeds == [] and b.seed == 0 and b.data.image_size == 64
    q = _built("--preset", "chexpert-kd", "--quick")
    assert q.data.image_size == settings.QUICK_IMAGE_SIZE and q.seeds == [] and q.seed == 0
    assert q.quick and q.preset == "chexpert-kd"  # quick: its own size, one seed


def test_unknown_preset_is_one_line():
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--preset", "nope"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "available: ci" in out.stderr


def test_list_shows_presets():
    out = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True)
    for name in presets.PRESETS.names():
        assert f"  {name}:" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name,backends,kind", [
    ("chexpert-kd", None, "multilabel"),
    ("skin-lesion", None, "multiclass"),
    ("covid-malaria", "onnxruntime", "binary"),
    ("covid-ensemble", "onnxruntime", "multiclass"),
])
def test_preset_quick_run_on_embedded_data(name, backends, kind, tmp_path):
    cmd = [sys.executable, "-m", "bench", "run", "--preset", name, "--dataset", "synthetic",
           "--quick", "--out", str(tmp_path)]
    if backends:
        cmd += ["--backends", backends]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    df = pd.read_csv(tmp_path / "results.csv", keep_default_na=False, na_values=[""])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["preset"] == name and manifest["data"]["task"] == kind
    measured = df[df["status"].str.startswith("ok")]
    assert {"teacher", "student"} <= set(measured["model"])
    assert measured["auc_roc"].notna().all()
    assert set(df["backend"]) == ({backends} if backends else {"torch", "onnxruntime", "openvino"})


def test_published_keys_name_models_the_preset_makes():
    import methods

    for preset in presets.PRESETS.items().values():
        chains = methods.expand(preset.settings.get("methods.spec", "kd,prune,quant"))
        made = {"teacher", "student", *(methods.chain_name(c) for c in chains)}
        for key in preset.published:
            assert key in made or key.startswith("published"), (preset.name, key)


def test_ci_preset_trains_and_measures_as_before():
    """ci once set --quick and overrode its measurement; now it writes the quick data and
    training values out itself, so the profile (above a preset) cannot undo its latency
    plan, and the run trains and measures exactly as it did (the old values, literally)."""
    from bench.child.timed_loop import LatencyPlan
    from bench.data import SyntheticSizes

    cfg = _built("--preset", "ci")
    assert cfg.profile is None and cfg.preset == "ci"
    assert cfg.data.image_size == 32 and cfg.data.dataset == "synthetic"
    assert cfg.data.sizes == SyntheticSizes(train=256, val=64, test=128, calibration=32,
                                            transfer=512)
    t, m = cfg.training, cfg.measurement
    assert (t.teacher_epochs, t.student_epochs, t.finetune_epochs) == (1.0, 1.0, 0.1)
    assert m.latency == LatencyPlan(warmup_n=10, warmup_s=0.2, min_n=100, min_s=0.5, max_s=10.0)
    assert m.repeats == 3 and m.shared_process is False and m.threads == 1
    assert m.n_boot == 200 and m.retime_budget_s == 0.0 and m.max_repeats == 5
    assert cfg.seed == 0 and cfg.seeds == [] and cfg.methods.spec == "kd,prune,quant"
    settings.validate(cfg)


def test_quick_over_a_preset_is_the_quick_profile_over_its_values():
    cfg = _built("--preset", "ci", "--quick")
    assert cfg.quick and cfg.measurement.shared_process is True
    assert cfg.measurement.latency == settings.QUICK_LATENCY
    assert cfg.measurement.threads == 1 and cfg.measurement.repeats == 3  # not the profile's


def test_rigorous_over_ci_raises_its_measurement():
    cfg = _built("--preset", "ci", "--rigorous")
    assert cfg.rigorous and cfg.measurement.latency == settings.RIGOROUS_PLAN
    assert cfg.measurement.repeats == 5 and cfg.measurement.retime_budget_s == 600.0
    assert cfg.data.image_size == 32  # the preset's data, untouched by the profile


@pytest.mark.parametrize("name", ["ci", "chexpert-kd", "covid-malaria", "skin-lesion",
                                  "covid-ensemble", "edge"])
def test_every_preset_builds_and_validates_on_synthetic_data(name):
    cfg = _built("--preset", name, "--dataset", "synthetic", "--quick")
    settings.validate(cfg)
    preset = presets.get(name)
    assert set(preset.settings) <= settings.KEYS and set(preset.synthetic) <= settings.KEYS


def test_edge_preset_is_covid_malaria_on_the_edge_runtimes():
    edge, paper = _built("--preset", "edge"), _built("--preset", "covid-malaria")
    assert edge.measurement.backends == ["executorch", "litert"]
    assert paper.measurement.backends == ["torch", "onnxruntime", "openvino"]
    assert (edge.data, edge.training, edge.methods) == (paper.data, paper.training, paper.methods)
    assert _built("--preset", "edge", "--dataset", "synthetic").data.image_size == 64
    assert _built("--preset", "edge", "--backends", "executorch").measurement.backends == [
        "executorch"]  # the user wins


def test_synthetic_extras_apply_only_to_synthetic_data():
    real = _built("--preset", "skin-lesion")
    assert real.data.dataset == "ham10000" and real.data.task == "binary"
    fake = _built("--preset", "skin-lesion", "--dataset", "synthetic")
    assert fake.data.task == "multiclass" and fake.data.num_classes == 7
    user = _built("--preset", "skin-lesion", "--dataset", "synthetic", "--num-classes", "3")
    assert user.data.num_classes == 3  # extras beat settings, never the user


def test_presets_are_read_only_and_never_touch_the_options():
    args = _parser().parse_args(["run", "--preset", "chexpert-kd", "--quick"])
    before = dict(vars(args))
    cfg = settings.build(args)
    assert vars(args) == before
    cfg.data.labels.append("x")  # the run's list is a copy
    assert "x" not in presets.get("chexpert-kd").settings["data.labels"]
    with pytest.raises(TypeError):
        presets.get("ci").settings["seed"] = 1
    assert not hasattr(presets.Preset, "fill") and not hasattr(presets.Preset, "configure")


def test_the_registry_serves_the_presets():
    from bench.registry import Registry

    assert isinstance(presets.PRESETS, Registry) and presets.PRESETS.group == "medbench.presets"
    assert presets.PRESETS.names()[:1] == ["ci"] and "skin-lesion" in presets.PRESETS
