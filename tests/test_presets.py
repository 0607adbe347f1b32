"""Presets: what they fill, that the user wins, and each one's quick run on embedded data."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench import presets
from bench.cli import _parser


def _filled(*argv):
    args = _parser().parse_args(["run", *argv])
    presets.get(args.preset).fill(args)
    return args


def test_preset_fills_the_paper_setup_and_the_user_wins():
    a = _filled("--preset", "chexpert-kd")
    assert a.dataset == "chexpert-v1.0-small" and a.uncertainty == "u-ones"
    assert a.labels.split(",") == list(presets.CHEXPERT_LABELS)
    assert a.image_size == 224 and a.seeds == "0,1,2"
    assert a.methods == "kd:alpha=0.3,temperature=6"  # 0.7 on the hard loss = 0.3 on KD
    b = _filled("--preset", "chexpert-kd", "--dataset", "synthetic", "--seed", "0",
                "--image-size", "64")
    assert b.task == "multilabel" and b.num_classes == 5 and b.labels is None
    assert b.seeds is None and b.seed == 0 and b.image_size == 64
    q = _filled("--preset", "chexpert-kd", "--quick")
    assert q.image_size is None and q.seeds is None and q.seed == 0  # quick: its own size, one seed


def test_unknown_preset_is_one_line():
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--preset", "nope"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "available: ci" in out.stderr


def test_list_shows_presets():
    out = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True)
    for name in presets.PRESETS:
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

    for preset in presets.PRESETS.values():
        chains = methods.expand(preset.options.get("methods", "kd,prune,quant"))
        made = {"teacher", "student", *(methods.chain_name(c) for c in chains)}
        for key in preset.published:
            assert key in made or key.startswith("published"), (preset.name, key)
