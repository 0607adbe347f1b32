"""End-to-end `--quick` runs: the rows, columns and files a run promises."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import methods
from tests.test_result_store import REQUIRED

pytestmark = pytest.mark.slow
MODELS = ["teacher", "student", "kd", "prune.magnitude", "prune.structured", "quant.dynamic",
          "quant.static"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "MEDBENCH_CACHE": str(root / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "kd,prune,quant",
                           "--quick", "--backends", "torch", "--out", str(root / "run")],
                          capture_output=True, text=True, env=env, timeout=600)
    return root, proc


def test_quick_run_succeeds_with_every_row_and_column(quick_run):
    root, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(root / "run" / "results.csv")
    assert list(df["model"]) == MODELS
    assert set(df["backend"]) == {"torch"} and set(df["status"]) == {"ok"}
    for col in REQUIRED:
        assert col in df.columns
    numeric = ["params", "params_nonzero", "weights_mib", "file_mib", "file_gz_mib",
               "compression_ratio", "macs", "latency_ms_p50", "latency_n", "speedup",
               "peak_rss_mib", "energy_mj_per_inference", "auc_roc", "accuracy"]
    assert df[numeric].notna().all().all(), df[numeric].isna().sum()
    assert (df["energy_source"].str.startswith("estimate:") | (df["energy_source"] == "rapl")).all()
    assert (df["threads"] > 0).all() and (df["latency_n"] >= 20).all()


def test_rows_agree_with_independent_computations(quick_run):
    root, _ = quick_run
    run = root / "run"
    df = pd.read_csv(run / "results.csv").set_index("model")
    for model, row in df.iterrows():
        files = list((run / "artifacts" / model / "torch").iterdir())
        on_disk = sum(f.stat().st_size for f in files) / 2**20
        assert row["file_mib"] == pytest.approx(on_disk, rel=1e-9)
        with np.load(run / "predictions" / f"{model}__torch.npz") as z:
            assert roc_auc_score(z["y_true"], z["y_score"]) == pytest.approx(row["auc_roc"], abs=1e-9)
        assert row["compression_ratio"] == pytest.approx(df.loc["teacher", "file_mib"] / row["file_mib"])
        assert row["speedup"] == pytest.approx(df.loc["teacher", "latency_ms_p50"] / row["latency_ms_p50"])
        assert (run / "latency" / f"{model}__torch.npy").exists()


def test_methods_change_what_they_should(quick_run):
    root, _ = quick_run
    df = pd.read_csv(root / "run" / "results.csv").set_index("model")
    t = df.loc["teacher"]
    assert df.loc["prune.magnitude", "params"] == t["params"]
    assert df.loc["prune.magnitude", "params_nonzero"] < 0.6 * t["params_nonzero"]
    assert df.loc["prune.magnitude", "file_gz_mib"] < 0.8 * t["file_gz_mib"]
    assert df.loc["prune.structured", "params"] < 0.5 * t["params"]
    assert df.loc["quant.static", "file_mib"] < 0.4 * t["file_mib"]
    assert df.loc["quant.static", "precision"] == "int8"
    assert df.loc["quant.static", "macs"] == t["macs"]  # int8 rows carry their float parent's MACs
    assert "Linear layers only" in df.loc["quant.dynamic", "notes"]
    assert df.loc["kd", "params"] == df.loc["student", "params"] < 0.4 * t["params"]


def test_run_directory_layout_and_manifest(quick_run):
    root, proc = quick_run
    run = root / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["image_size"] == 32 and manifest["num_classes"] == 2
    assert manifest["config"]["quick"] is True and manifest["versions"]["torch"]
    assert set(manifest["models"]) == set(MODELS)
    assert manifest["teacher"]["source"] == "trained"
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and all(m in html for m in MODELS)
    assert not (run / ".work").exists()
    assert "teacher: training densenet121" in proc.stderr  # progress is shown


def test_second_run_reuses_teacher_and_a_failing_method_does_not_stop_the_run(quick_run, monkeypatch):
    from bench.cli import main

    class Broken(methods.Method):
        name = "broken.always"
        summary = "raises, for this test"

        def apply(self, parent, ctx):
            raise RuntimeError("deliberate failure")

    root, _ = quick_run
    monkeypatch.setenv("MEDBENCH_CACHE", str(root / "cache"))
    monkeypatch.setitem(methods._REGISTRY, "broken.always", Broken)
    out = root / "run2"
    code = main(["run", "--methods", "broken.always,quant.dynamic", "--quick", "--backends", "torch",
                 "--out", str(out)])
    assert code == 1
    df = pd.read_csv(out / "results.csv").set_index("model")
    assert df.loc["broken.always", "status"] == "failed"
    assert "deliberate failure" in df.loc["broken.always", "error"]
    assert df.loc["quant.dynamic", "status"] == "ok" and df.loc["teacher", "status"] == "ok"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher"]["source"] == "cache"
    first = pd.read_csv(Path(root / "run" / "results.csv")).set_index("model")
    assert df.loc["teacher", "auc_roc"] == pytest.approx(first.loc["teacher", "auc_roc"], abs=1e-6)
