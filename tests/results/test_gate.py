"""The CI gate on hand-made run directories: exact figures, speedup tolerance, AUC margin,
and speedups and AUCs gated only against figures recorded on the same machine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import baseline, gate, machines, model_code
from bench.results.row import Result, row_label
from bench.results.store import RunStore

#: a machine's description as bench.results.machines.describe_machine writes it
MACHINE = {"hostname": "box", "cpu": "Example CPU", "cpu_vendor": "GenuineIntel",
           "cpu_model_id": "6/143/8", "isa": ["avx2", "avx512f"], "architecture": "x86_64",
           "logical_cores": 2, "physical_cores": 2, "platform": "Linux",
           "runtimes": {"torch": "2.14.1", "onnxruntime": "1.32.0"}}
#: the model code a hand-made run records (bench.results.model_code.fingerprint's shape)
CODE = {"methods/kd.py": "0123456789abcdef", "bench/modelling/training.py": "fedcba9876543210"}


def _run(path, changes=None, drop=None, machine=MACHINE, code=CODE):
    store = RunStore(path)
    store.write_manifest({"machines": {"box": machine}, "model_code": code})
    rows = [
        Result(model="teacher", method="baseline", backend="onnxruntime", arch="densenet121",
               precision="fp32", params=7_000_000, params_nonzero=7_000_000, weights_mib=26.8,
               file_mib=26.9, compression_ratio=1.0, latency_ms_p50=4.0, speedup=1.0, auc_roc=0.88),
        Result(model="quant.static", method="quant.static", backend="onnxruntime",
               arch="densenet121", precision="int8", params=7_000_000, params_nonzero=6_990_000,
               weights_mib=7.9, file_mib=7.6, compression_ratio=3.5394, latency_ms_p50=2.0,
               speedup=2.0, auc_roc=0.87),
    ]
    for r in rows:
        if drop == r.model:
            continue
        store.add(r.with_(machine="box", **(changes or {}).get(r.model, {})))
    return path


def _ungated(notes):
    """The notes but the one naming the machine whose figures were used and the margin
    columns' summaries."""
    return [n for n in notes if not n.startswith("speedups and AUCs gated against")
            and " gated on " not in n]


def test_gate_passes_on_its_own_baseline(tmp_path):
    run = _run(tmp_path / "run")
    assert gate.check(run, baseline.baseline_from_run(run)) == []


def test_gate_fails_when_a_compression_ratio_changes_by_one_percent(tmp_path):
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    run = _run(tmp_path / "b", {"quant.static": {"compression_ratio": 3.5394 * 0.99}})
    (line,) = gate.check(run, base)
    assert line.startswith("quant.static / onnxruntime / int8: compression_ratio")


def test_gate_fails_on_a_missing_model_and_on_a_failed_row(tmp_path):
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    assert gate.check(_run(tmp_path / "b", drop="quant.static"), base) == [
        "quant.static / onnxruntime / int8: missing from the run"]
    run = _run(tmp_path / "c", {"quant.static": {"status": "failed", "error": "export: boom"}})
    assert "export: boom" in gate.check(run, base)[0]


def test_gate_passes_latency_changes_within_tolerance_and_fails_beyond(tmp_path):
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    within = _run(tmp_path / "b", {"quant.static": {"latency_ms_p50": 2.3, "speedup": 1.74}})
    assert gate.check(within, base) == []
    beyond = _run(tmp_path / "c", {"quant.static": {"speedup": 1.4}})
    assert "speedup" in gate.check(beyond, base)[0]
    assert gate.check(beyond, base, speedup_tolerance=0.35) == []


def test_gate_auc_margin(tmp_path):
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    assert gate.check(_run(tmp_path / "b", {"teacher": {"auc_roc": 0.865}}), base) == []
    (line,) = gate.check(_run(tmp_path / "c", {"teacher": {"auc_roc": 0.85}}), base)
    assert "auc_roc 0.8500 fell below" in line


def test_check_command_exit_codes_and_update(tmp_path):
    run = _run(tmp_path / "run")
    baseline = tmp_path / "baseline" / "ci.json"
    cmd = [sys.executable, "-m", "bench", "check", str(run), "--baseline", str(baseline)]
    missing = subprocess.run(cmd, capture_output=True, text=True)
    assert missing.returncode == 2 and "baseline not found" in missing.stderr
    upd = subprocess.run(cmd + ["--update"], capture_output=True, text=True)
    assert upd.returncode == 0 and "+ teacher / onnxruntime / fp32" in upd.stdout
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    broken = _run(tmp_path / "broken", {"quant.static": {"params_nonzero": 7_000_000}})
    out = subprocess.run([*cmd[:4], str(broken), *cmd[5:]], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stdout.strip() == ("quant.static / onnxruntime / int8: params_nonzero 7000000 != "
                                  "baseline 6990000")


def test_bad_baseline_is_one_line(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a medbench baseline"):
        baseline.load_baseline(bad)


def test_unstable_speedups_are_reported_not_gated(tmp_path):
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    noisy = _run(tmp_path / "b", {"quant.static": {"speedup": 1.2, "status": "ok;unstable"}})
    notes = []
    assert gate.check(noisy, base, notes=notes) == []
    (note,) = _ungated(notes)
    assert note.startswith("quant.static / onnxruntime / int8: speedup 1.2x is -40%")
    assert note.endswith("not gated: quant.static unstable in this run")
    teacher_noisy = _run(tmp_path / "c", {"quant.static": {"speedup": 1.2},
                                          "teacher": {"status": "ok;unstable"}})
    assert gate.check(teacher_noisy, base) == []
    # sizes are still gated exactly on an unstable row
    sized = _run(tmp_path / "d", {"quant.static": {"status": "ok;unstable", "file_mib": 7.0,
                                                   "compression_ratio": 3.8}})
    assert "compression_ratio" in gate.check(sized, base)[0]


def test_speedups_on_a_backend_noisier_than_the_tolerance_are_reported_not_gated(tmp_path):
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    quiet = _run(tmp_path / "b", {"quant.static": {"speedup": 1.2},
                                  "teacher": {"noise_floor": 0.05}})
    assert len(gate.check(quiet, base)) == 1  # a 5% floor: the -40% speedup is a regression
    loud = _run(tmp_path / "c", {"quant.static": {"speedup": 1.2},
                                 "teacher": {"noise_floor": 0.3}})
    notes = []
    assert gate.check(loud, base, notes=notes) == []
    assert _ungated(notes)[0].endswith("noise floor in this run (30%) exceeds half the tolerance")


def test_gated_columns_come_from_the_column_metadata():
    from bench.results.row import gated

    assert baseline.EXACT == ("params", "params_nonzero", "weights_mib", "compression_ratio")
    assert (baseline.RATIO, baseline.MARGIN) == (("speedup",), ("auc_roc",))
    assert baseline.GATED == (*gated("exact"), *gated("ratio"), *gated("margin"))


def test_the_committed_ci_baseline_still_loads_and_gates(tmp_path):
    """reports/baseline/ci.json keeps its meaning: a run holding its sizes, measured on the
    machine its speedups and AUCs were recorded on, passes; one speedup off by the
    tolerance fails with the usual message; on another CPU only the sizes are gated."""
    from pathlib import Path

    path = Path(__file__).parent.parent.parent / "reports" / "baseline" / "ci.json"
    base = baseline.load_baseline(path)
    section = base["machines"][0]
    figures = {row_label(r): r for r in section["rows"]}

    def run(where, machine, halve=None):
        store = RunStore(tmp_path / where)
        store.write_manifest({"machines": {"m": {**machine, "hostname": "m"}},
                              "model_code": base["model_code"]})
        for row in base["rows"]:
            fig = dict(figures[row_label(row)])
            if row_label(row) == halve:
                fig["speedup"] *= 0.5
            store.add(Result(method="m", arch="a", machine="m", **{**fig, **row}))
        return tmp_path / where

    assert gate.check(run("same", section["machine"]), base) == []
    key = row_label(base["rows"][1])
    (line,) = gate.check(run("slow", section["machine"], halve=key), base)
    assert line.startswith(f"{key}: speedup ") and line.endswith("(tolerance +-25%)")
    other = {**section["machine"], "cpu_model_id": "25/17/1", "cpu_vendor": "AuthenticAMD"}
    notes = []
    assert gate.check(run("other", other, halve=key), base, notes=notes) == []
    (note,) = _ungated(notes)
    assert note.startswith(f"speedup and auc_roc of {len(base['rows'])} rows not gated")


def test_figures_are_gated_only_against_the_same_machine(tmp_path):
    """Measured: the `ci` preset's student on ONNX Runtime ran 11.0x on the AMD EPYC the
    first baseline came from and 4.0x on an Intel Xeon; the Xeon's teacher AUC was 0.557
    against 0.605. Such figures are compared only between equal CPUs and runtimes."""
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    slow = {"quant.static": {"speedup": 0.8, "auc_roc": 0.5}}
    assert len(gate.check(_run(tmp_path / "b", slow), base)) == 2
    for change in ({"cpu_model_id": "25/17/1"}, {"isa": ["avx2"]}, {"logical_cores": 4},
                   {"runtimes": {"onnxruntime": "1.33.0"}}):
        notes = []
        elsewhere = _run(tmp_path / f"c{len(str(change))}", slow, machine={**MACHINE, **change})
        assert gate.check(elsewhere, base, notes=notes) == [], change
        assert notes[0].startswith("speedup and auc_roc of 2 rows not gated: measured on ")
    # a runtime only one side has, or another backend's, does not matter
    extra = {**MACHINE, "runtimes": {**MACHINE["runtimes"], "ai-edge-litert": "2.3.0"}}
    assert len(gate.check(_run(tmp_path / "d", slow, machine=extra), base)) == 2
    with_litert = baseline.baseline_from_run(_run(tmp_path / "g", machine=extra))
    other_litert = {**MACHINE, "runtimes": {**MACHINE["runtimes"], "ai-edge-litert": "2.4.0"}}
    assert len(gate.check(_run(tmp_path / "h", slow, machine=other_litert), with_litert)) == 2
    # a size is gated on any machine
    resized = _run(tmp_path / "e", {"quant.static": {"params_nonzero": 1}},
                   machine={**MACHINE, "cpu_model_id": "25/17/1"})
    (line,) = gate.check(resized, base)
    assert "params_nonzero 1 != baseline 6990000" in line
    # a run whose manifest does not describe its machine: sizes only
    undescribed = _run(tmp_path / "f", slow, machine={"hostname": "box"})
    assert gate.check(undescribed, base) == []


def test_update_keeps_other_machines_figures_while_the_sizes_hold(tmp_path):
    amd = {**MACHINE, "cpu_vendor": "AuthenticAMD", "cpu_model_id": "25/17/1"}
    first = baseline.baseline_from_run(_run(tmp_path / "a"))
    merged, dropped = baseline.merge(first, baseline.baseline_from_run(_run(tmp_path / "b", machine=amd)))
    assert dropped == [] and [m["machine"]["cpu_model_id"] for m in merged["machines"]] == [
        "25/17/1", "6/143/8"]
    # the same machine again replaces its own figures
    again, _ = baseline.merge(merged, baseline.baseline_from_run(
        _run(tmp_path / "c", {"quant.static": {"speedup": 3.0}})))
    assert len(again["machines"]) == 2
    assert baseline.diff(merged, baseline.baseline_from_run(tmp_path / "c")) == [
        "~ quant.static / onnxruntime / int8: speedup 2 -> 3 (on " + machines.machine_name(
            machines.machine_class(MACHINE)) + ")"]
    # a size within the gate's rounding (the Xeon and the EPYC wrote ONNX Runtime's int8
    # file 3e-6 apart) is the same size: the other machine's figures stay
    rounded = baseline.baseline_from_run(_run(tmp_path / "r", {"quant.static": {
        "compression_ratio": 3.5394 * (1 + 3e-6)}}, machine=amd))
    assert len(baseline.merge(merged, rounded)[0]["machines"]) == 2
    # a change of sizes makes every other machine's figures stale
    resized = baseline.baseline_from_run(_run(tmp_path / "d", {"quant.static": {"weights_mib": 7.0}}))
    kept, dropped = baseline.merge(merged, resized)
    assert len(kept["machines"]) == 1 and len(dropped) == 1 and "stale" in dropped[0]


def test_a_version_1_baseline_gates_its_sizes_only(tmp_path):
    v1 = {"baseline_version": 1, "tolerances": {"speedup": 0.25, "auc_margin": 0.02},
          "rows": [{"model": "quant.static", "backend": "onnxruntime", "precision": "int8",
                    "params": 7_000_000, "params_nonzero": 6_990_000, "weights_mib": 7.9,
                    "compression_ratio": 3.5394, "speedup": 9.0, "auc_roc": 0.99}]}
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1))
    base = baseline.load_baseline(path)
    assert base["machines"] == []
    notes = []
    (line,) = gate.check(_run(tmp_path / "run"), base, notes=notes)
    assert "recorded by model code it did not record" in line
    assert gate.check(_run(tmp_path / "sized", {"quant.static": {"params": 1}}), base)[1:] == [
        "quant.static / onnxruntime / int8: params 1 != baseline 7000000"]


def test_the_machine_description_names_the_cpu_as_proc_cpuinfo_does():
    """Checked against lscpu, an independent reader of the same CPU."""
    import shutil

    from bench.results import machines

    m = machines.hardware()
    lscpu = shutil.which("lscpu")
    if lscpu is None or not Path("/proc/cpuinfo").exists():
        pytest.skip("no lscpu or /proc/cpuinfo on this machine")
    out = subprocess.run([lscpu], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("Flags", "").split())
    assert set(m["isa"]) == {f for f in machines.ISA_FLAGS if f in flags}
    if "Model name" in fields and fields.get("Vendor ID", "").startswith(("Genuine", "Authentic")):
        assert m["cpu"] == fields["Model name"] and m["cpu_vendor"] == fields["Vendor ID"]
        assert m["cpu_model_id"].split("/")[:2] == [fields["CPU family"], fields["Model"]]


def _backend_run(path, speedups: dict):
    """A teacher and four compressed rows on one backend, with the given speedups."""
    store = RunStore(path)
    store.write_manifest({"machines": {"box": MACHINE}, "model_code": CODE})
    store.add(Result(model="teacher", method="baseline", backend="openvino", arch="d",
                     precision="fp32", speedup=1.0, auc_roc=0.9, machine="box"))
    for model, speedup in speedups.items():
        store.add(Result(model=model, method=model, backend="openvino", arch="m",
                         precision="fp32", speedup=speedup, auc_roc=0.9, machine="box"))
    return path


def test_a_shift_every_row_of_a_backend_shares_is_the_teachers_not_a_regression(tmp_path):
    """Measured in a CI run: OpenVINO's three teacher processes all ran slow (2.6-2.9 ms
    against 1.4-2.1 in other runs), and every OpenVINO speedup rose 47-76% together."""
    base = baseline.baseline_from_run(_backend_run(tmp_path / "a", {"kd": 8.5, "student": 8.2,
                                                                "pruned": 3.5, "int8": 2.6}))
    shifted = _backend_run(tmp_path / "b", {"kd": 12.6, "student": 12.9, "pruned": 5.2,
                                            "int8": 3.9})
    notes = []
    assert gate.check(shifted, base, notes=notes) == []
    assert any("openvino: its speedups moved together by +49%" in n for n in notes)
    # one method regressing amid that shift still fails, against the shift
    regressed = _backend_run(tmp_path / "c", {"kd": 12.6, "student": 12.9, "pruned": 5.2,
                                              "int8": 2.0})
    (line,) = gate.check(regressed, base)
    assert line.startswith("int8 / openvino / fp32: speedup 2x") and "common shift" in line
    # fewer than three compressed rows: no shift is inferred, the plain tolerance holds
    assert gate.backend_shifts(gate._expected(base, {}, {}, [], base["machines"]), {}) == {}


def test_an_auc_drop_inside_the_rows_own_interval_is_noted_not_gated(tmp_path):
    """Issue 29: the `ci` preset's 128 test images give AUC intervals of about +-0.1, and a
    CI failed on `kd` 0.4556 against 0.5479. A drop past the margin fails only where the
    row's interval excludes the baseline's figure; the note says why it was not gated."""
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    wide = _run(tmp_path / "b", {"quant.static": {"auc_roc": 0.78, "auc_ci_low": 0.66,
                                                  "auc_ci_high": 0.89}})
    notes = []
    assert gate.check(wide, base, notes=notes) == []
    (note,) = _ungated(notes)
    assert note.startswith("quant.static / onnxruntime / int8: auc_roc 0.7800 fell below")
    assert "inside the row's 95% interval [0.6600, 0.8900]" in note
    assert any(n.startswith("auc_roc gated on 2 rows at a margin of 0.02") for n in notes)
    narrow = _run(tmp_path / "c", {"quant.static": {"auc_roc": 0.78, "auc_ci_low": 0.76,
                                                    "auc_ci_high": 0.80}})
    (line,) = gate.check(narrow, base)
    assert line.endswith("past the row's 95% interval (high end 0.8000)")


def test_figures_of_other_model_code_fail_the_gate_naming_the_files(tmp_path):
    """Issue 29 (a): a change of the models that kept the old baseline failed CI only on the
    machine the figures were recorded on. The gate now sees the code that made them."""
    base = baseline.baseline_from_run(_run(tmp_path / "a"))
    changed = {**CODE, "methods/kd.py": "1111111111111111", "methods/new.py": "2222222222222222"}
    notes = []
    (line,) = gate.check(_run(tmp_path / "b", code=changed), base, notes=notes)
    assert line.startswith("baseline: its speedups and AUCs were recorded by other model code "
                           "(changed: methods/kd.py, methods/new.py)")
    assert "--update" in line
    assert any("recorded by other model code; sizes are gated all the same" in n for n in notes)
    # sizes are still gated
    lines = gate.check(_run(tmp_path / "c", {"quant.static": {"params": 1}}, code=changed), base)
    assert len(lines) == 2 and "params 1 != baseline" in lines[1]
    # a run written before manifests recorded the code: noted, figures gated as before
    notes = []
    assert gate.check(_run(tmp_path / "d", code=None), base, notes=notes) == []
    assert any("does not record its model code" in n for n in notes)


def test_update_after_a_model_code_change_drops_the_other_machines_figures(tmp_path):
    amd = {**MACHINE, "cpu_vendor": "AuthenticAMD", "cpu_model_id": "25/17/1"}
    merged, _ = baseline.merge(baseline.baseline_from_run(_run(tmp_path / "a")),
                               baseline.baseline_from_run(_run(tmp_path / "b", machine=amd)))
    assert len(merged["machines"]) == 2
    new = baseline.baseline_from_run(_run(tmp_path / "c", code={**CODE, "methods/kd.py": "9" * 16}))
    assert "~ model code: methods/kd.py" in baseline.diff(merged, new)
    kept, dropped = baseline.merge(merged, new)
    assert [m["machine"]["cpu_model_id"] for m in kept["machines"]] == ["6/143/8"]
    (line,) = dropped
    assert "the model code changed, so they are stale" in line


def test_the_model_code_fingerprint_sees_code_not_prose(tmp_path):
    src = 'def f(x):\n    """Why."""\n    return x + 1  # one\n'
    assert model_code.file_hash(src) == model_code.file_hash(
        'def f(x):\n    """Another why."""\n\n    return x + 1\n')
    assert model_code.file_hash(src) != model_code.file_hash(src.replace("+ 1", "+ 2"))
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "a.py").write_text(src)
    assert model_code.fingerprint(tmp_path) == {"methods/a.py": model_code.file_hash(src)}


def test_the_committed_ci_baseline_was_recorded_by_this_code():
    """Fails as soon as a change reaches the code that makes the models, before CI's gate
    does: record the `ci` preset again on this machine (the message says how)."""
    path = Path(__file__).parent.parent.parent / "reports" / "baseline" / "ci.json"
    recorded = baseline.load_baseline(path).get("model_code") or {}
    files = model_code.changed(recorded, model_code.fingerprint())
    assert not files, (
        f"reports/baseline/ci.json was recorded by other model code (changed: "
        f"{model_code.describe(files)}): run `python -m bench run --preset ci --out RUN && "
        "python -m bench check RUN --baseline reports/baseline/ci.json --update` on this machine")
