import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.results.row import SCHEMA_VERSION, Result
from bench.results.store import RunStore, load_predictions, load_rows, safe_name
from bench.task_kinds import Task
from tests.helpers import REQUIRED


def test_every_required_column_exists_and_declares_unit_and_direction():
    cols = {c["name"]: c for c in Result.columns()}
    for name in REQUIRED:
        assert name in cols
        assert {"unit", "better", "doc"} <= cols[name].keys()
        assert cols[name]["better"] in (None, "higher", "lower")
    assert cols["auc_roc"]["better"] == "higher" and cols["file_mib"]["unit"] == "MiB"


def test_result_is_frozen_and_nan_becomes_null():
    r = Result(model="m", method="x", backend="torch", arch="a", precision="fp32", auc_roc=float("nan"))
    with pytest.raises(AttributeError):
        r.model = "other"
    assert r.to_dict()["auc_roc"] is None


def test_store_writes_rows_at_once_and_round_trips(tmp_path):
    store = RunStore(tmp_path)
    a = Result(model="teacher", method="baseline", backend="torch", arch="d", precision="fp32",
               params=10, file_mib=2.5, auc_roc=0.9)
    store.add(a)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 1  # on disk before the next row
    store.add(Result(model="kd+quant.static", method="quant.static", backend="torch", arch="m",
                     precision="int8", status="failed", error="boom, with a comma"))
    store.add(a.with_(auc_roc=0.91))  # same (model, backend) replaces, where it stands
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df.columns) == [c["name"] for c in Result.columns()]
    assert len(df) == 2 and df["error"].iloc[1] == "boom, with a comma"
    assert df["params"].dtype.kind in "if" and df["auc_roc"].iloc[0] == 0.91
    rows = load_rows(tmp_path)
    assert rows[0] == a.with_(auc_roc=0.91)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and len(doc["columns"]) == len(Result.columns())


def test_predictions_file_holds_arrays_and_the_task(tmp_path):
    store = RunStore(tmp_path)
    task = Task("binary", ("normal", "opacity"))
    path = store.save_predictions("kd+prune.structured:ratio=0.3", "torch", np.array([0, 1]),
                                  np.array([0.2, 0.8]), np.zeros((2, 2)), task=task)
    assert path.name == "kd+prune.structured_ratio=0.3__torch.npz"
    with np.load(path) as z:
        assert set(z.files) == {"y_true", "y_score", "logits", "task_kind", "class_names"}
    pred = load_predictions(tmp_path, "kd+prune.structured:ratio=0.3", "torch", "fp32")
    assert pred["task"] == task and set(pred) == {"y_true", "y_score", "logits", "task"}
    assert load_predictions(tmp_path, "absent", "torch", "fp32") is None


def test_the_stored_task_wins_over_the_shapes(tmp_path):
    """Two-column scores with 1-D labels would be guessed multiclass; a binary task is
    stored, so it is binary. Without a stored task (schema 2-3) the manifest decides."""
    store = RunStore(tmp_path)
    task = Task("multilabel", ("a", "b"))
    store.save_predictions("m", "torch", np.array([[0, 1], [1, 0]]), np.ones((2, 2)),
                           np.zeros((2, 2)), task=task)
    assert load_predictions(tmp_path, "m", "torch", "fp32")["task"] == task
    np.savez(store.predictions_path("old", "torch"), y_true=np.array([0, 1, 1]),
             y_score=np.ones((3, 2)), logits=np.zeros((3, 2)))
    assert load_predictions(tmp_path, "old", "torch", "fp32")["task"] == Task(
        "multiclass", ("class 0", "class 1"))
    store.write_manifest({"data": {"task": "binary", "classes": ["normal", "opacity"]}})
    assert load_predictions(tmp_path, "old", "torch", "fp32")["task"] == Task(
        "binary", ("normal", "opacity"))


def test_load_rows_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="results.json: no results"):
        load_rows(tmp_path)
    (tmp_path / "results.json").write_text("{bad")
    with pytest.raises(ValueError, match="results.json: not valid JSON"):
        load_rows(tmp_path)


def test_precision_variants_are_rows_and_files_of_their_own(tmp_path):
    store = RunStore(tmp_path)
    a = Result(model="teacher", method="baseline", backend="openvino", arch="d", precision="fp32")
    store.add(a)
    store.add(a.with_(precision="bf16"))
    assert [r.precision for r in load_rows(tmp_path)] == ["fp32", "bf16"]
    assert store.predictions_path("teacher", "openvino") != store.predictions_path(
        "teacher", "openvino", "bf16")
    assert store.samples_path("teacher", "openvino", "bf16").name == "teacher__openvino__bf16.npz"
    assert store.artifact_dir("teacher", "openvino", "bf16").name == "openvino-bf16"


def test_safe_name_keeps_chain_readable():
    assert safe_name("kd+quant.static") == "kd+quant.static"
    assert not math.isnan(len(safe_name("a:b,c")))
    assert safe_name("a:b,c/d") == "a_b_c_d"
