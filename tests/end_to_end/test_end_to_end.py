"""End-to-end `--quick` runs: the rows, columns and files a run promises."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import methods
from tests.helpers import REQUIRED

pytestmark = pytest.mark.slow
MODELS = ["teacher", "student", "kd", "prune.magnitude", "prune.structured", "quant.dynamic",
          "quant.static"]


BACKENDS = ["torch", "onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def quick_run(local_quick_run):
    """One --quick run on every backend, with HOME pointed at an empty folder (shared with
    tests/cluster/test_cluster.py, which compares a cluster's run with it)."""
    return local_quick_run


def read(path):
    # 'n/a' is a status here, not a missing value (pandas reads it as NaN by default)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def torch_rows(root):
    df = read(root / "run" / "results.csv")
    return df[df["backend"] == "torch"].reset_index(drop=True)


def test_quick_run_succeeds_with_every_row_and_column(quick_run):
    root, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    every = read(root / "run" / "results.csv")
    assert list(every["backend"].unique()) == BACKENDS
    assert len(every) == len(MODELS) * len(BACKENDS)
    na = every[every["status"] == "n/a"]
    assert list(zip(na["model"], na["backend"], strict=True)) == [("quant.dynamic", "openvino")]
    assert "no dynamic int8" in na["error"].iloc[0]
    df = torch_rows(root)
    assert list(df["model"]) == MODELS
    assert df["status"].str.startswith("ok;quick").all()  # ";unstable" may follow
    for col in REQUIRED:
        assert col in df.columns
    numeric = ["params", "params_nonzero", "weights_mib", "file_mib", "file_gz_mib",
               "compression_ratio", "macs", "latency_ms_p50", "latency_n", "speedup",
               "peak_rss_mib", "energy_mj_per_inference", "auc_roc", "accuracy",
               "auc_ci_low", "auc_ci_high", "delta_auc", "delong_p", "f1", "ece", "brier",
               "flip_rate", "latency_ms_iqr", "latency_cv", "throughput_per_s", "gmacs_per_s",
               "peak_fraction", "load_rss_mib"]
    assert df[numeric].notna().all().all(), df[numeric].isna().sum()
    assert (df["energy_source"].str.startswith("estimate:") | (df["energy_source"] == "rapl")).all()
    assert (df["threads"] > 0).all() and (df["latency_n"] >= 20).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_agree_with_independent_computations(quick_run, backend):
    root, _ = quick_run
    run = root / "run"
    df = read(run / "results.csv")
    df = df[(df["backend"] == backend) & df["status"].str.startswith("ok;quick")].set_index("model")
    assert {"teacher", "student"} <= set(df.index)
    suffixes = {"torch": [".pt"], "onnxruntime": [".onnx"], "openvino": [".xml", ".bin"]}[backend]
    for model, row in df.iterrows():
        files = sorted((run / "artifacts" / model / backend).iterdir())
        assert [f.suffix for f in files] == sorted(suffixes)
        on_disk = sum(f.stat().st_size for f in files) / 2**20
        assert row["file_mib"] == pytest.approx(on_disk, rel=1e-9)
        with np.load(run / "predictions" / f"{model}__{backend}.npz") as z:
            assert roc_auc_score(z["y_true"], z["y_score"]) == pytest.approx(row["auc_roc"], abs=1e-9)
        assert row["compression_ratio"] == pytest.approx(df.loc["teacher", "file_mib"] / row["file_mib"])
        assert row["speedup"] == pytest.approx(df.loc["teacher", "latency_ms_p50"] / row["latency_ms_p50"])
        with np.load(run / "latency" / f"{model}__{backend}.npz") as z:
            (samples,) = [z[k] for k in z.files]  # one process per row by default
        assert row["latency_ms_p50"] == pytest.approx(np.median(samples), rel=1e-12)
        assert row["latency_n"] == len(samples) and row["latency_repeats"] == 1
        assert row["latency_ms_ci_low"] <= row["latency_ms_p50"] <= row["latency_ms_ci_high"]
        assert row["auc_ci_low"] <= row["auc_roc"] <= row["auc_ci_high"]
        assert row["gmacs_per_s"] == pytest.approx(row["macs"] / row["latency_ms_p50"] / 1e6)
        if row["precision"] == "fp32":
            assert row["parity_max_abs"] < 1e-3 and row["parity_agree"] == 1.0
        else:  # int8: reported, not failed (the quick teacher is near chance: labels flip)
            assert row["parity_max_abs"] > 0 and 0 <= row["parity_agree"] <= 1
    # kd against the undistilled student, from the two rows' saved predictions
    assert df.loc["kd", "delta_auc_vs_student"] == pytest.approx(
        df.loc["kd", "auc_roc"] - df.loc["student", "auc_roc"], abs=1e-9)
    assert 0 <= df.loc["kd", "delong_p_vs_student"] <= 1
    assert np.isnan(df.loc["teacher", "delta_auc_vs_student"])  # another architecture


def test_nothing_is_written_to_home(quick_run):
    root, _ = quick_run
    assert list((root / "home").rglob("*")) == []


def test_methods_change_what_they_should(quick_run):
    root, _ = quick_run
    df = torch_rows(root).set_index("model")
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
    assert manifest["config"]["profile"] == "quick" and manifest["versions"]["torch"]
    assert set(manifest["config"]) >= {"data", "training", "methods", "measurement", "output"}
    assert manifest["task"] == {"kind": "binary", "class_names": ["normal", "opacity"]}
    assert set(manifest["models"]) == set(MODELS)
    assert manifest["backends"]["openvino"]["converted_from"] == "onnx"
    assert set(manifest["backends"]) == set(BACKENDS)
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
    methods.all_methods()  # the built-in methods first: an empty registry would load none
    monkeypatch.setitem(methods.METHODS._items, "broken.always", Broken)
    out = root / "run2"
    code = main(["run", "--methods", "broken.always,quant.dynamic", "--quick", "--backends", "torch",
                 "--out", str(out)])
    assert code == 1
    df = read(out / "results.csv").set_index("model")
    assert df.loc["broken.always", "status"] == "failed"
    assert "deliberate failure" in df.loc["broken.always", "error"]
    assert df.loc["quant.dynamic", "status"].startswith("ok;quick")
    assert df.loc["teacher", "status"].startswith("ok;quick")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher"]["source"] == "cache"
    first = torch_rows(root).set_index("model")
    assert df.loc["teacher", "auc_roc"] == pytest.approx(first.loc["teacher", "auc_roc"], abs=1e-6)


@pytest.mark.alone  # two tools' latencies compared: nothing else may run meanwhile
def test_bench_latency_agrees_with_benchmark_app(tmp_path):
    """The bench's own loop and OpenVINO's benchmark_app on the default teacher's fp32 IR
    (DenseNet-121 at the default 64 px, exported by the bench's OpenVINO backend), the
    bench's default measuring threads, batch 1, one stream, f32: their medians must agree
    within 15%."""
    import torch

    from bench.backends import ExportEnv, deploy, get
    from bench.config.sections import default_threads
    from bench.modelling.architectures import build
    from tests.helpers.crosscheck import bench_median, benchmark_app_median

    torch.manual_seed(0)
    teacher = build("densenet121", 2).eval()
    art = methods.Artifact(name="teacher", arch="densenet121", module=teacher, float_module=teacher)
    env = ExportEnv(image_size=64, calibration=np.zeros((1, 1, 64, 64), np.float32),
                    work_dir=tmp_path / "work")
    deployed = deploy(get("openvino"), art, tmp_path, env)
    # The threads the bench measures with (physical cores minus one): at 2 threads on the
    # 2-core VM, processes are bimodal and this test failed in CI although each tool ran
    # seven times, alternating, compared as medians of medians (as it still is).
    threads = default_threads()
    ours, theirs = [], []
    for _ in range(7):
        ours.append(bench_median(deployed.files, threads, 64, seconds=2))
        theirs.append(benchmark_app_median(deployed.files[0], threads, 64, seconds=2))
    ours, theirs = float(np.median(ours)), float(np.median(theirs))
    print(f"bench {ours:.3f} ms, benchmark_app {theirs:.3f} ms")
    assert abs(ours - theirs) / theirs < 0.15, (ours, theirs)


@pytest.fixture(scope="module")
def edge_run(quick_run):
    """A --quick run on the two edge runtimes, from the first run's cached teacher, with
    HOME again an empty folder (litert-torch brings kagglehub and transformers). The
    baselines (DenseNet-121 and MobileNetV2 in fp32) and the student in static int8, where
    the two runtimes' realisations differ: the teacher's int8 on both took the fixture from
    117 s to 224 s here (quantizing and lowering DenseNet-121's 120 convolutions twice)."""
    root, _ = quick_run
    home = root / "edge-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "MPLCONFIGDIR")}
    env.update(MEDBENCH_CACHE=str(root / "cache"), HOME=str(home))
    env.pop("XDG_CACHE_HOME", None)
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "student+quant.static",
                           "--backends", "executorch,litert", "--quick", "--out", str(root / "edge")],
                          capture_output=True, text=True, env=env, timeout=1200)
    return root, home, proc


@pytest.mark.edge
def test_quick_run_on_the_edge_runtimes(edge_run):
    root, home, proc = edge_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = root / "edge"
    df = read(run / "results.csv")
    assert list(df["backend"].unique()) == ["executorch", "litert"]
    assert (df["status"].str.startswith("ok;quick")).all(), df[["model", "backend", "error"]]
    assert set(df["model"]) == {"teacher", "student", "student+quant.static"}
    exports = json.loads((run / "manifest.json").read_text())["exports"]
    for _, row in df.iterrows():
        (path,) = (run / "artifacts" / row["model"] / row["backend"]).iterdir()
        assert path.suffix == {"executorch": ".pte", "litert": ".tflite"}[row["backend"]]
        assert row["file_mib"] == pytest.approx(path.stat().st_size / 2**20, rel=1e-9)
        with np.load(run / "predictions" / f"{row['model']}__{row['backend']}.npz") as z:
            assert roc_auc_score(z["y_true"], z["y_score"]) == pytest.approx(row["auc_roc"], abs=1e-9)
        if row["precision"] == "fp32":
            assert row["parity_max_abs"] < 1e-3 and row["parity_agree"] == 1.0
        else:
            notes = exports[f"{row['model']}/{row['backend']}"]["notes"]
            assert any("int8" in n and " of " in n for n in notes), notes
    static = df[df["model"] == "student+quant.static"].set_index("backend")
    student = df[df["model"] == "student"].set_index("backend")
    assert (static["file_mib"] < 0.5 * student["file_mib"]).all()  # int8 weights on disk
    assert "Created TensorFlow Lite" not in proc.stderr and "threadpool" not in proc.stderr
    assert list(home.rglob("*")) == []
