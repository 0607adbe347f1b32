"""Resume after a kill: a real --quick run is killed with SIGKILL during training, during
export and between measured rows; each is run again with the same options, continues,
and ends with the rows of an uninterrupted run in every deterministic column. After
every kill, no file of the run directory or the cache is half-written."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ARGS = ["run", "--quick", "--backends", "torch,onnxruntime",
        "--methods", "kd,prune.structured,quant.static"]
#: columns that do not depend on timing: they must equal the uninterrupted run's
DETERMINISTIC = ("precision", "params", "params_nonzero", "buffers", "weights_mib",
                 "file_mib", "file_gz_mib", "compression_ratio", "macs", "auc_roc",
                 "auc_ci_low", "auc_ci_high", "delta_auc", "delta_auc_ci_low",
                 "delta_auc_ci_high", "delong_p", "accuracy", "sensitivity", "specificity",
                 "ece", "brier", "flip_rate", "parity_max_abs", "delta_auc_vs_student")
KILL_POINTS = {"training": r"\] kd: step", "export": r"\] onnxruntime: exporting",
               "measuring": r"\] torch: \S+ measured"}


def _env(cache: Path) -> dict:
    return {**os.environ, "MEDBENCH_CACHE": str(cache)}


def _run(out: Path, cache: Path, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *ARGS, "--out", str(out)],
                          capture_output=True, text=True, env=_env(cache), timeout=timeout)


def _run_and_kill(out: Path, cache: Path, pattern: str) -> list[str]:
    """Start the run; SIGKILL the bench process when a log line matches `pattern`."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(cache))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    time.sleep(1)  # orphaned measuring processes notice the closed pipe and exit
    return lines


def _rows(run: Path) -> dict:
    with open(run / "results.csv") as fh:
        return {(r["model"], r["backend"], r["precision"]): r for r in csv.DictReader(fh)}


def assert_nothing_half_written(*roots: Path) -> None:
    """Every file a reader may open is whole: JSON parses, tables read, arrays load,
    saved models load, and recorded exports hash as recorded. Scratch (.work), folders
    being deployed (*.partial) and temporary files (*.tmp*) are not files readers open."""
    import torch

    from bench.results.saved import file_sha256

    for root in roots:
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if (not path.is_file() or ".work" in rel.parts or ".tmp" in path.name
                    or any(p.endswith(".partial") for p in rel.parts)):
                continue
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
            elif path.suffix == ".csv":
                list(csv.DictReader(path.open()))
            elif path.suffix == ".npz":
                with np.load(path) as z:
                    [z[k] for k in z.files]
            elif path.suffix == ".pt" and "artifacts" not in rel.parts:
                torch.load(path, map_location="cpu", weights_only=True)
        manifest = root / "manifest.json"
        if manifest.exists():
            for record in (json.loads(manifest.read_text()).get("exports") or {}).values():
                for rel, digest in zip(record["files"], record["sha256"], strict=True):
                    assert file_sha256(root / rel) == digest, rel


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from tests.helpers.probe import fresh_cache

    root = tmp_path_factory.mktemp("resume")
    cache = fresh_cache(root / "cache")
    started = time.perf_counter()
    proc = _run(root / "reference", cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, cache, time.perf_counter() - started


@pytest.mark.slow
def test_a_run_killed_at_every_point_in_turn_resumes_to_the_same_rows(reference):
    """One run directory, killed during training, then (resumed) during export, then
    (resumed) between measured rows, then resumed to the end: each kill point is met by a
    resumed run, which tests more than three runs each killed once and costs one run's
    work instead of three (issue 29)."""
    root, cache, reference_s = reference
    out = root / "killed"
    for point, pattern in KILL_POINTS.items():
        started = time.perf_counter()
        lines = _run_and_kill(out, cache, pattern)
        print(f"{point}: killed after {time.perf_counter() - started:.1f} s")
        if point != "training":  # each later kill is met by a run that resumed
            assert any("continuing the unfinished run" in ln for ln in lines), point
        assert_nothing_half_written(out, cache)
        assert "wall_seconds" not in json.loads((out / "manifest.json").read_text())
    started = time.perf_counter()
    proc = _run(out, cache)
    resumed_s = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing the unfinished run" in proc.stderr + proc.stdout
    print(f"resumed to the end in {resumed_s:.1f} s (uninterrupted run {reference_s:.1f} s)")
    want, got = _rows(root / "reference"), _rows(out)
    assert set(got) == set(want)
    for key, row in want.items():
        # ok / failed / n/a; a qualifier (";unstable") depends on timing
        assert got[key]["status"].split(";")[0] == row["status"].split(";")[0], key
        for column in DETERMINISTIC:
            assert got[key][column] == row[column], (key, column)
    from bench.results.store import load_predictions

    for model, backend, precision in want:
        a = load_predictions(root / "reference", model, backend, precision)
        b = load_predictions(out, model, backend, precision)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.array_equal(a["y_score"], b["y_score"]), (model, backend)
    assert not (out / ".resume").exists() and not (out / ".work").exists()
    assert_nothing_half_written(out, cache)


def test_a_different_configuration_in_the_same_directory_is_refused(tmp_path):
    from bench.pipeline.resume import open_run

    (tmp_path / "manifest.json").write_text(json.dumps(
        {"created": "then", "config": {"data": {"image_size": 64}, "seed": 0,
                                       "output": {"out": "a"}}}))
    with pytest.raises(ValueError, match=r"another configuration: data.image_size: 64 there, "
                                         r"32 now"):
        open_run(tmp_path, {"data": {"image_size": 32}, "seed": 0, "output": {"out": "b"}})
    run = open_run(tmp_path, {"data": {"image_size": 64}, "seed": 0, "output": {"out": "b"}})
    assert run.resuming
    (tmp_path / "manifest.json").write_text(json.dumps({"created": "then", "wall_seconds": 3}))
    with pytest.raises(ValueError, match="holds a finished run"):
        open_run(tmp_path, {})


def test_a_channel_pruned_model_is_restored_from_its_weights_and_its_parent():
    """Method.restore's default: the parent's structure, resized to the saved weights."""
    import torch
    import torch_pruning as tp

    import methods
    from bench.modelling.architectures import build, clone

    torch.manual_seed(0)
    parent = build("mobilenet_v2", 3).eval()
    model = clone(parent)
    pruner = tp.pruner.MetaPruner(model, torch.zeros(1, 3, 32, 32),
                                  importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[model.classifier[-1]])
    pruner.step()
    art = methods.Artifact(name="kd", arch="mobilenet_v2", module=parent, float_module=parent)
    again = methods.get("prune.structured")().restore(art, None, model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


@pytest.mark.slow
def test_two_runs_at_once_share_an_empty_cache_without_corrupting_it(tmp_path):
    """Both train the teacher (neither finds it cached), both write the cache (atomic
    replaces: the last one wins, with the same bytes), and both end with the same rows."""
    cache = tmp_path / "cache"
    # a small teacher: what is tested is two processes training one into one empty cache
    # (DenseNet-121 at --quick made this test 113 s, most of it the two trainings)
    args = ["run", "--quick", "--backends", "torch", "--methods", "quant.dynamic",
            "--teacher", "mobilenet_v3_small"]
    procs = [subprocess.Popen([sys.executable, "-m", "bench", *args, "--out", str(tmp_path / n)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_env(cache)) for n in ("a", "b")]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert set(a) == set(b)
    for key in a:
        for column in ("params", "file_mib", "weights_mib", "macs", "auc_roc", "accuracy"):
            assert a[key][column] == b[key][column], (key, column)
    assert_nothing_half_written(tmp_path / "a", tmp_path / "b", cache)
    assert len(list((cache / "teachers").glob("*.pt"))) == 1
