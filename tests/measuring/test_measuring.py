"""The measuring pass without processes: run_worker replaced by a fake whose latency per
process is chosen by the test (steady, or bimodal between processes)."""

from types import SimpleNamespace

import numpy as np
import pytest

from bench import measuring
from bench.child.records import ProcessResult
from bench.config.sections import MeasurementConfig, RunConfig, default_threads
from bench.measuring import launch
from bench.results.row import Result
from bench.results.store import RunStore
from bench.task_kinds import Task
from tests.helpers import UnprobedStation

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

    def fake_worker(job, job_path, server=None):
        out = []
        for item in job.items:
            k = sum(1 for c in calls if c == (job.backend, item.model))
            calls.append((job.backend, item.model))
            median = plans[item.model](k)  # a pair of medians: a bimodal process
            modes = np.resize(np.atleast_1d(median), 200)
            np.save(item.samples_out, modes * (1 + rng.normal(0, 0.01, 200)))
            if item.predicts:
                np.save(item.logits_out, logits)
            out.append(ProcessResult(model=item.model, samples_path=item.samples_out,
                                     logits_path=item.logits_out, seconds=0.1))
        return out

    monkeypatch.setattr(launch, "run_worker", fake_worker)
    monkeypatch.setattr("bench.child.forkserver.start", lambda backend, env: None)
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
            rows.append(measuring.Target(row, files=()))
        return rows

    return SimpleNamespace(data=data, store=store, paths=paths, references=references,
                           plans=plans, calls=calls, outcomes=outcomes)


def cfg_with(**measurement):
    return RunConfig(measurement=MeasurementConfig(**measurement))


def _run(s, cfg, backends=("onnxruntime",)):
    outcomes = {b: s.outcomes(list(s.plans), b) for b in backends}
    measuring.measure_all(outcomes, cfg, s.data, s.store, s.paths, s.references,
                          UnprobedStation())
    return {(r.backend, r.model): r for r in s.store.rows}


def test_teacher_twice_noise_floor_and_the_bimodal_row_gets_more_processes(setup):
    s = setup
    s.plans.update(teacher=lambda k: 10.0 * (1.02 if k % 2 else 1.0),
                   steady=lambda k: 5.0,
                   dense=lambda k: 10.1,
                   bimodal=lambda k: (2.0, 4.0) if k == 0 else 2.0)  # its 1st process bimodal
    rows = _run(s, cfg_with(retime_budget_s=60.0, max_repeats=5, n_boot=200))
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
    _run(s, cfg_with(retime_budget_s=0.0, n_boot=100))
    assert sum(1 for _, m in s.calls if m == "flappy") == 1
    assert sum(1 for _, m in s.calls if m == "teacher") == 2  # the noise floor needs two
    rows = {r.model: r for r in s.store.rows}
    assert "unstable" in rows["flappy"].status  # not re-timed: still flagged, not hidden


def test_max_repeats_caps_a_row_that_never_settles(setup):
    s = setup
    s.plans.update(teacher=lambda k: 10.0, flappy=lambda k: (2.0, 4.0) if k == 0 else [2.0, 4.0, 8.0][k % 3])
    _run(s, cfg_with(retime_budget_s=600.0, max_repeats=4, n_boot=100))
    assert sum(1 for _, m in s.calls if m == "flappy") == 4


def test_default_threads_leave_a_core_free(monkeypatch):
    from bench.config import sections as config

    monkeypatch.setattr(config, "physical_cores", lambda: 2)
    assert default_threads() == 1 and MeasurementConfig().threads == 1
    monkeypatch.setattr(config, "physical_cores", lambda: 1)
    assert default_threads() == 1
    monkeypatch.setattr(config, "physical_cores", lambda: 8)
    assert default_threads() == 7
    assert RunConfig().training.train_threads == 8


def test_fork_server_survives_a_failing_child(tmp_path):
    """A child that fails (here: no job file) reports its exit code; the server goes on."""
    from bench.child import forkserver
    from bench.measuring.launch import worker_env

    server = forkserver.start("onnxruntime", worker_env(1))
    assert server is not None
    try:
        for _ in range(2):
            lines, code = server.run(str(tmp_path / "missing.json"))
            assert code == 1
    finally:
        server.close()


def test_job_and_results_round_trip_through_files(tmp_path):
    """What crosses the process boundary is typed, and read back from a file, not stdout."""
    from bench.child.records import Job, JobItem, read_results
    from bench.child.timed_loop import LatencyPlan

    item = JobItem(model="kd", variant="", files=("a.onnx",), samples_out="s.npy",
                   options=(("inference_precision", "f32"),), logits_out="l.npy")
    job = Job(backend="onnxruntime", threads=1, device="cpu", plan=LatencyPlan(min_s=0.1),
              test_images="t.npy", result_out=str(tmp_path / "r.jsonl"), items=(item,))
    assert Job.read(job.write(tmp_path / "job.json")) == job
    results = [ProcessResult(model="kd", samples_path="s.npy", latency_cold_ms=3.0),
               ProcessResult(model="x", error="RuntimeError: boom")]
    (tmp_path / "r.jsonl").write_text("".join(r.to_line() + "\n" for r in results))
    assert read_results(tmp_path / "r.jsonl") == results
    assert not results[1].ok


def test_a_real_worker_measures_through_the_fork_server(tmp_path, tiny_data):
    """The worker calls the timing code the unit tests cover, and reports through its
    results file; a model that cannot load is its own error, the next one still measured."""
    import torch

    from bench import backends
    from bench.child import forkserver
    from bench.child.records import Job, JobItem
    from bench.child.timed_loop import LatencyPlan
    from tests.helpers import TinyNet

    torch.manual_seed(0)
    net = TinyNet().eval()
    art = __import__("methods").Artifact(name="t", arch="tiny", module=net, float_module=net)
    env = backends.ExportEnv(image_size=16, calibration=tiny_data.calibration,
                             work_dir=tmp_path / "w")
    (tmp_path / "m").mkdir()
    deployed = backends.deploy(backends.get("onnxruntime"), art, tmp_path / "m", env)
    test = tmp_path / "test.npy"
    np.save(test, np.repeat(tiny_data.test.images, 3, axis=1))
    items = (JobItem("missing", "", (str(tmp_path / "nope.onnx"),), str(tmp_path / "a.npy")),
             JobItem("t", "", tuple(str(f) for f in deployed.files), str(tmp_path / "b.npy"),
                     logits_out=str(tmp_path / "b.logits.npy")))
    job = Job("onnxruntime", 1, "cpu", LatencyPlan(warmup_n=2, warmup_s=0, min_n=20, min_s=0.05),
              str(test), str(tmp_path / "r.jsonl"), items)
    server = forkserver.start("onnxruntime", launch.worker_env(1))
    try:
        bad, good = launch.run_worker(job, tmp_path / "job.json", server)
    finally:
        if server is not None:
            server.close()
    assert bad.error and "nope.onnx" in bad.error or "NoSuchFile" in (bad.error or "")
    assert good.ok and len(good.samples()) >= 20 and good.latency_cold_ms > 0
    assert np.load(good.logits_path).shape == (len(tiny_data.test.images), 2)
