"""Old run directories stay readable: tests/fixtures/schema2-run is a real --quick run
written before schema 3 (results.json schema 2, predictions without their task). It is
copied before use, never changed. Files newer than this version, or older than the
oldest it reads, are refused in one line naming the file."""

import json
import shutil
from pathlib import Path

import pytest

from bench.results.compare import compare_runs
from bench.results.compare_text import format_comparison
from bench.results.row import OLDEST_READABLE_SCHEMA, SCHEMA_VERSION
from bench.results.store import load_predictions, load_rows, load_samples

FIXTURE = Path(__file__).parent.parent / "fixtures" / "schema2-run"
ROWS = [("teacher", "torch", "fp32"), ("student", "torch", "fp32"), ("kd", "torch", "fp32"),
        ("quant.static", "torch", "int8"), ("teacher", "onnxruntime", "fp32"),
        ("student", "onnxruntime", "fp32"), ("kd", "onnxruntime", "fp32"),
        ("quant.static", "onnxruntime", "int8")]


@pytest.fixture
def run(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "schema2-run"))


def _with_version(run: Path, version) -> Path:
    path = run / "results.json"
    doc = json.loads(path.read_text())
    if version is None:
        doc.pop("schema_version")
    else:
        doc["schema_version"] = version
    path.write_text(json.dumps(doc))
    return run


def test_the_fixture_is_schema_2():
    assert json.loads((FIXTURE / "results.json").read_text())["schema_version"] == 2


def test_load_rows_reads_schema_2_missing_columns_are_none(run):
    rows = load_rows(run)
    assert [(r.model, r.backend, r.precision) for r in rows] == ROWS
    assert all(r.ok for r in rows)
    teacher = rows[0]
    assert teacher.params and teacher.auc_roc is not None and teacher.latency_ms_p50
    # columns schema 2 did not have
    assert teacher.speedup_ci_low is None and teacher.noise_floor is None
    assert teacher.delta_auc_vs_student is None


def test_schema_3_loads_and_unknown_columns_are_dropped(run):
    path = _with_version(run, 3) / "results.json"
    doc = json.loads(path.read_text())
    doc["rows"][0]["a_column_from_elsewhere"] = 1
    path.write_text(json.dumps(doc))
    assert len(load_rows(run)) == len(ROWS)


def test_load_predictions_gives_the_binary_task_of_an_old_run(run):
    for key in ROWS:
        pred = load_predictions(run, *key)
        assert pred["task"].kind == "binary", key
        assert pred["task"].class_names == ("normal", "opacity")  # from the manifest
        assert pred["y_score"].ndim == 1 and load_samples(run, *key)


def test_compare_an_old_run_with_a_copy_of_itself(run, tmp_path):
    other = Path(shutil.copytree(run, tmp_path / "copy"))
    c = compare_runs(run, other, n_boot=200)
    assert [r.key for r in c.rows] == ROWS and not c.only_a and not c.only_b
    for r in c.rows:
        assert not r.significant and r.sizes == [] and not r.notes
        assert r.latency.ratio == 1.0 and r.latency.ci_low <= 1 <= r.latency.ci_high
        assert r.auc.paired and r.auc.delta == 0 and r.auc.p_method == "DeLong"
    text = format_comparison(c)
    assert f"{len(ROWS)} rows in both, 0 with a significant change" in text
    assert "SIGNIFICANT" not in text


def test_compare_command_on_an_old_run(run, tmp_path, capsys):
    from bench.cli import main

    other = shutil.copytree(run, tmp_path / "copy")
    assert main(["compare", str(run), str(other)]) == 0
    assert f"{len(ROWS)} rows in both" in capsys.readouterr().out


def test_a_newer_schema_is_refused_in_one_line(run):
    _with_version(run, 99)
    with pytest.raises(ValueError) as e:
        load_rows(run)
    assert str(e.value) == (f"{run / 'results.json'}: written by a newer medbench (schema 99); "
                            f"this one reads {OLDEST_READABLE_SCHEMA}..{SCHEMA_VERSION}")


@pytest.mark.parametrize("version", [None, 1, OLDEST_READABLE_SCHEMA - 1, "2", True])
def test_an_older_or_missing_schema_is_refused_in_one_line(run, version):
    _with_version(run, version)
    with pytest.raises(ValueError) as e:
        load_rows(run)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{run / 'results.json'}: ")
    assert f"reads {OLDEST_READABLE_SCHEMA}..{SCHEMA_VERSION}" in msg


def test_the_cli_says_which_file_is_too_new(run, capsys):
    from bench.cli import main

    _with_version(run, 99)
    assert main(["compare", str(run), str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "schema 99" in err
