"""The measuring pass without processes: run_worker replaced by a fake whose latency per
process is chosen by the test (steady, or bimodal between processes)."""

from types import SimpleNamespace

import numpy as np
import pytest

from bench import measuring
from bench.config import RunConfig, default_threads
from bench.result import Result
from bench.store import RunStore
from bench.tasks import Task

N_TEST = 60


@pytest.fixture
def setup(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    task = Task("binary", ("neg", "pos"))
    labels = np.arange(N_TEST) % 2
    data = SimpleNamespace(task=task, test=SimpleNamespace(labels=labels, groups=None),
                           val=SimpleNamespace(labels=labels))
    logits = np.stack([-labels + rng.normal(0, 0.8, N_TEST), labels + rng.normal(0, 0.8, N_TEST)],
                      axis=1).astype(np.float32)
    calls = []
    # per model: the median latency (ms) of its k-th process
    plans = {}

    def fake_worker(backend, threads, device, plan, paths, items, idle_w=None, server=None,
                    predict_threads=None):
        out = []
        for item in items:
            k = sum(1 for c in calls if c == (backend, item["model"]))
            calls.append((backend, item["model"]))
            median = plans[item["model"]](k)  # a pair of medians: a bimodal process
            modes = np.resize(np.atleast_1d(median), 200)
            np.save(item["samples_out"], modes * (1 + rng.normal(0, 0.01, 200)))
            if item["predict"]:
                np.save(item["logits_out"], logits)
            out.append({"model": item["model"]})
        return out

    monkeypatch.setattr(measuring, "run_worker", fake_worker)
    monkeypatch.setattr("bench.forkserver.start", lambda backend, env: None)
    store = RunStore(tmp_path / "run")
    work = tmp_path / "work"
    work.mkdir()
    paths = measuring.Paths(test=work / "t.npy", val=None, work=work)
    references = {}

    def outcomes(models, backend="onnxruntime"):
        rows = []
        for m in models:
            references[m] = logits[:measuring.PARITY_BATCH]
            row = Result(model=m, method="baseline", backend=backend, arch="a", precision="fp32",
                         file_mib=1.0)
            item = {"model": m, "variant": "", "files": [], "options": {},
                    "logits_out": str(work / f"{m}-{backend}.logits.npy")}
            rows.append((row, item))
        return rows

    return SimpleNamespace(data=data, store=store, paths=paths, references=references,
                           plans=plans, calls=calls, outcomes=outcomes)


def _run(s, cfg, backends=("onnxruntime",)):
    outcomes = {b: s.outcomes(list(s.plans), b) for b in backends}
    measuring.measure_all(outcomes, cfg, s.data, s.store, s.paths, s.references, {})
    return {(r.backend, r.model): r for r in s.store.rows}


def test_teacher_twice_noise_floor_and_the_bimodal_row_gets_more_processes(setup):
    s = setup
    s.plans.update(teacher=lambda k: 10.0 * (1.02 if k % 2 else 1.0),
                   steady=lambda k: 5.0,
                   dense=lambda k: 10.1,
                   bimodal=lambda k: (2.0, 4.0) if k == 0 else 2.0)  # its 1st process bimodal
    rows = _run(s, RunConfig(retime_budget_s=60.0, max_repeats=5, n_boot=200))
    count = {m: sum(1 for _, mm in s.calls if mm == m) for m in s.plans}
    assert count["steady"] == 1 and count["dense"] == 1
    # 1: spread out; 2: the two disagree; 3: one odd process of 3 moves the median; 4: settled
    assert count["bimodal"] == 4
    assert count["teacher"] >= 3  # twice in the first pass, again beside the re-timed row
    t, b = rows["onnxruntime", "teacher"], rows["onnxruntime", "bimodal"]
    assert t.noise_floor == pytest.approx(0.02, abs=0.005)
    assert b.latency_repeats == 4 and "unstable" not in b.status
    assert b.latency_ms_p50 == pytest.approx(2.0, rel=0.02)
    assert b.speedup == pytest.approx(t.latency_ms_p50 / b.latency_ms_p50)
    # a dense copy of the teacher: its interval (widened by the floor) holds 1
    d = rows["onnxruntime", "dense"]
    assert d.speedup_ci_low <= 1.0 <= d.speedup_ci_high
    st = rows["onnxruntime", "steady"]
    assert st.speedup_ci_low > 1.5 and st.speedup_ci_low <= st.speedup <= st.speedup_ci_high
    assert [r.model for r in s.store.rows] == list(s.plans)  # rows keep their order


def test_the_retime_budget_bounds_the_adaptive_pass(setup):
    s = setup
    s.plans.update(teacher=lambda k: 10.0, flappy=lambda k: (2.0, 4.0))
    _run(s, RunConfig(retime_budget_s=0.0, n_boot=100))
    assert sum(1 for _, m in s.calls if m == "flappy") == 1
    assert sum(1 for _, m in s.calls if m == "teacher") == 2  # the noise floor needs two
    rows = {r.model: r for r in s.store.rows}
    assert "unstable" in rows["flappy"].status  # not re-timed: still flagged, not hidden


def test_max_repeats_caps_a_row_that_never_settles(setup):
    s = setup
    s.plans.update(teacher=lambda k: 10.0, flappy=lambda k: (2.0, 4.0) if k == 0 else [2.0, 4.0, 8.0][k % 3])
    _run(s, RunConfig(retime_budget_s=600.0, max_repeats=4, n_boot=100))
    assert sum(1 for _, m in s.calls if m == "flappy") == 4


def test_default_threads_leave_a_core_free(monkeypatch):
    from bench import config

    monkeypatch.setattr(config, "physical_cores", lambda: 2)
    assert default_threads() == 1 and RunConfig().threads == 1
    monkeypatch.setattr(config, "physical_cores", lambda: 1)
    assert default_threads() == 1
    monkeypatch.setattr(config, "physical_cores", lambda: 8)
    assert default_threads() == 7
    assert RunConfig().train_threads == 8


def test_fork_server_survives_a_failing_child(tmp_path):
    """A child that fails (here: no job file) reports its exit code; the server goes on."""
    from bench import forkserver
    from bench.launch import worker_env

    server = forkserver.start("onnxruntime", worker_env(1))
    assert server is not None
    try:
        for _ in range(2):
            lines, code = server.run(str(tmp_path / "missing.json"))
            assert code == 1 and not any(line.startswith("@@RESULT") for line in lines)
    finally:
        server.close()
