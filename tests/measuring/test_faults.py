"""A failing runtime costs one row, not the run.

A backend installed as a plugin (so that the fork server and the worker processes find it
through its entry point) fails on demand, by the item's option `fault`: a segfault, an
abort, a SIGKILL (the OOM killer's signal), a hang, a MemoryError from a real allocation
beyond an address-space limit, NaN outputs on the timed example, inf outputs on the test
split only. Each must become its item's error, and the items after it in the same shared
process must still be measured, through the fork server and through plain processes; and
through the measuring plan, each becomes a failed row while the others are measured.
"""

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench.child import records
from bench.child.forkserver import ChildExit
from bench.child.records import Job, JobItem, ProcessResult, read_results
from bench.child.timed_loop import LatencyPlan
from bench.measuring import launch

ROOT = Path(__file__).resolve().parents[2]
N_TEST = 40
PLAN = LatencyPlan(warmup_n=1, warmup_s=0.0, min_n=3, min_s=0.01, max_s=0.2)
HANG_S = 4.0  # the hang cases' timeout: longer than a good item takes here

FAULTS = '''
"""A backend whose models fail on demand (the option "fault"); a good one otherwise."""
import ctypes
import os
import resource
import signal
import time

import numpy as np

from bench.backends import Backend


def logits(x):
    m = x.mean(axis=(1, 2, 3))
    return np.stack([m, -m], axis=1).astype(np.float32)


def allocate_beyond_a_limit():
    """A real allocation failure: 16 GiB asked for under an address-space limit of 1 GiB
    more than the process maps now (this child only; the limit is lifted after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) for line in fh if line.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2 ** 30, hard))
    try:
        return np.ones(2 ** 31)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class FaultBackend(Backend):
    name = "faulty"
    deploys = "nothing: fails as its options say"

    def load(self, files, threads, device="cpu", options=None):
        fault = (options or {}).get("fault", "")
        if fault == "segv":
            ctypes.string_at(0)
        elif fault == "abort":
            os.abort()
        elif fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault == "hang":
            time.sleep(3600)
        elif fault == "oom":
            allocate_beyond_a_limit()

        def predict(x):
            out = logits(x)
            if fault == "nan":
                out[:, 0] = np.nan
            if fault == "inf_on_split" and len(x) > 1:  # the timed example (batch 1) is fine
                out[0] = np.inf
            return out

        return predict
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    from tests.helpers.plugin_dist import install_plugin

    return install_plugin(tmp_path_factory.mktemp("faulty"), "medbench-faulty", "medbench_faulty",
                          {"backend": FAULTS},
                          {"medbench.backends": {"faulty": "medbench_faulty.backend:FaultBackend"}})


@pytest.fixture
def plugin_env(plugin_site, monkeypatch):
    """PYTHONPATH for every process the test starts (fork servers and plain workers)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_site), str(ROOT)]))
    return launch.worker_env(1)


def _images(path: Path) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((N_TEST, 3, 4, 4)).astype(np.float32)
    np.save(path, x)
    return path, x


def _job(tmp_path: Path, faults: list[str], **kw) -> Job:
    test, _ = _images(tmp_path / "test.npy")
    items = tuple(JobItem(model=f"{f}-{i}", variant="", files=(), options=(("fault", f),),
                          samples_out=str(tmp_path / f"{i}.npy"),
                          logits_out=str(tmp_path / f"{i}.logits.npy"))
                  for i, f in enumerate(faults))
    return Job(backend="faulty", threads=1, device="cpu", plan=PLAN, test_images=str(test),
               result_out=str(tmp_path / "results.jsonl"), items=items, **kw)


EXPECTED = {
    "segv": "crashed: killed by signal SIGSEGV (11) while measuring segv-",
    "abort": "crashed: killed by signal SIGABRT (6) while measuring abort-",
    "sigkill": "crashed: killed by SIGKILL (out of memory?) while measuring sigkill-",
    "hang": f"hung: no result within {HANG_S:g} s; killed",
    "oom": "out of memory: Unable to allocate 16.0 GiB",
    "nan": "non-finite outputs: 1 of 2 values are NaN/inf (the timed example)",
    "inf_on_split": "non-finite outputs: 2 of 80 values are NaN/inf (the test split)",
}


def _check(results: list[ProcessResult], faults: list[str], result_out: str) -> None:
    assert [r.model for r in results] == [f"{f}-{i}" for i, f in enumerate(faults)]
    for fault, r in zip(faults, results, strict=True):
        if fault == "good":
            assert r.ok and len(r.samples()) >= PLAN.min_n, r
            assert np.isfinite(np.load(r.logits_path)).all()
        else:
            assert r.error and r.error.startswith(EXPECTED[fault]), (fault, r.error)
    # the results file holds one line per item, in order, the bench's own lines included
    assert read_results(Path(result_out)) == results


@pytest.mark.slow
@pytest.mark.alone  # a hang is told from a slow item by the clock (HANG_S)
def test_every_fault_is_its_items_error_and_the_next_item_is_still_measured(
        tmp_path, plugin_env):
    from bench.child import forkserver

    faults = ["segv", "good", "abort", "hang", "good", "oom", "sigkill", "nan", "inf_on_split",
              "good"]
    job = _job(tmp_path, faults, timeout_s=HANG_S)
    server = forkserver.start("faulty", plugin_env)
    assert server is not None
    try:
        results = launch.run_worker(job, tmp_path / "job.json", server)
        _check(results, faults, job.result_out)
        assert "peak RSS" in results[6].error  # the clue the OOM killer leaves
        # a job the worker cannot even start fails every item, in one process, not one each
        (tmp_path / "b").mkdir()
        broken = _job(tmp_path / "b", ["good", "good"], timeout_s=HANG_S)
        Path(broken.test_images).unlink()
        for r in launch.run_worker(broken, tmp_path / "b" / "job.json", server):
            assert r.error.startswith("crashed: exited with code 1 while measuring good-"), r
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.alone  # a hang is told from a slow item by the clock (HANG_S)
def test_plain_processes_report_signals_and_hangs_too(tmp_path, plugin_env):
    faults = ["segv", "hang", "good"]
    job = _job(tmp_path, faults, timeout_s=HANG_S)
    _check(launch.run_worker(job, tmp_path / "job.json", server=None), faults, job.result_out)


@pytest.mark.slow
@pytest.mark.alone  # a hang is told from a slow item by the clock (HANG_S)
def test_a_failing_runtime_costs_one_row_not_the_run(tmp_path, plugin_env, monkeypatch):
    """Through the measuring plan (--quick's shared process): every fault is a failed row
    with its error, the rows after it are measured, and the run would exit 1."""
    from bench import measuring
    from bench.config.sections import MeasurementConfig, RunConfig
    from bench.results.row import STATUS_FAILED, Result
    from bench.results.store import RunStore
    from bench.task_kinds import Task
    from tests.helpers import UnprobedStation

    monkeypatch.setattr(records, "item_timeout_s", lambda plan, predicts: HANG_S)
    work = tmp_path / "work"
    work.mkdir()
    test, x = _images(work / "test.npy")
    m = x.mean(axis=(1, 2, 3))
    reference = np.stack([m, -m], axis=1)[:measuring.PARITY_BATCH]
    labels = np.arange(N_TEST) % 2
    data = SimpleNamespace(task=Task("binary", ("neg", "pos")),
                           test=SimpleNamespace(labels=labels, groups=None),
                           val=SimpleNamespace(labels=labels))
    rows = {"teacher": "", "segv": "segv", "hang": "hang", "nan": "nan", "good": ""}
    targets = [measuring.Target(Result(model=name, method="baseline", backend="faulty", arch="a",
                                       precision="fp32", file_mib=1.0),
                                files=(), options=(("fault", fault),))
               for name, fault in rows.items()]
    cfg = RunConfig(measurement=MeasurementConfig(
        threads=1, shared_process=True, retime_budget_s=0.0, latency=PLAN, n_boot=100))
    store = RunStore(tmp_path / "run")
    measuring.measure_all({"faulty": targets}, cfg, data, store,
                          measuring.Paths(test=test, val=None, work=work),
                          {name: reference for name in rows}, UnprobedStation())
    got = {r.model: r for r in store.rows}
    assert list(got) == list(rows)
    for name in ("teacher", "good"):
        assert got[name].ok and got[name].latency_ms_p50 > 0, got[name]
    for name in ("segv", "hang", "nan"):
        row = got[name]
        assert row.status == STATUS_FAILED and row.error.startswith(
            EXPECTED[name].rstrip("-")), row
    assert any(r.status.split(";")[0] == STATUS_FAILED for r in store.rows)  # runner: exit 1


def test_exit_descriptions():
    assert launch.describe_exit(ChildExit(-signal.SIGSEGV), "m") == (
        "crashed: killed by signal SIGSEGV (11) while measuring m")
    assert launch.describe_exit(ChildExit(-signal.SIGKILL, hung_s=2.5), "m") == (
        "hung: no result within 2.5 s; killed")
    assert launch.describe_exit(ChildExit(-signal.SIGKILL, peak_rss_mib=900.0), "m").startswith(
        "crashed: killed by SIGKILL (out of memory?) while measuring m; peak RSS 900 MiB")
    assert launch.describe_exit(ChildExit(3), "m") == "crashed: exited with code 3 while measuring m"


def test_worker_errors_say_what_went_wrong():
    from bench.child import worker

    assert worker.describe_error(MemoryError()) == "out of memory: MemoryError"
    assert worker.describe_error(RuntimeError("std::bad_alloc")) == "out of memory: std::bad_alloc"
    assert worker.describe_error(ValueError("bad\nmore")) == "ValueError: bad"
    worker.check_finite(np.zeros((2, 2)), "x")
    with pytest.raises(worker.NonFiniteOutputs, match=r"^non-finite outputs: 2 of 4 values "
                                                      r"are NaN/inf \(x\)$"):
        worker.check_finite(np.array([[np.nan, 1.0], [np.inf, 0.0]]), "x")


def test_the_timeout_scales_with_the_plan_and_can_be_set_per_job(tmp_path):
    item = JobItem("m", "", (), "s.npy")
    job = Job("torch", 1, "cpu", LatencyPlan(), "t.npy", "r.jsonl", (item,))
    assert job.item_timeout_s == 3 * (0.5 + 2 + 30) + records.LOAD_ALLOWANCE_S
    predicting = Job("torch", 1, "cpu", LatencyPlan(), "t.npy", "r.jsonl",
                     (JobItem("m", "", (), "s.npy", logits_out="l.npy"),))
    assert predicting.item_timeout_s == job.item_timeout_s + records.PREDICT_ALLOWANCE_S
    short = Job("torch", 1, "cpu", LatencyPlan(), "t.npy", "r.jsonl", (item,), timeout_s=5.0)
    assert short.item_timeout_s == 5.0 and Job.read(short.write(tmp_path / "j.json")) == short
    never = Job("torch", 1, "cpu", LatencyPlan(), "t.npy", "r.jsonl", (item,), timeout_s=0)
    assert never.item_timeout_s is None


def test_a_line_cut_short_is_no_result_and_the_bench_appends_after_it(tmp_path):
    path = tmp_path / "r.jsonl"
    good = ProcessResult(model="a", seconds=1.0)
    path.write_text(good.to_line() + "\n" + good.to_line()[:20])  # killed mid-write
    assert read_results(path) == [good]
    failed = ProcessResult(model="b", error="crashed: ...")
    records.append_result(path, failed)
    assert read_results(path) == [good, failed]
