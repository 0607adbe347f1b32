"""`--executor ray` (bench.cluster): options, placement and faults with a scripted station,
and (slow) a real two-node, token-authenticated Ray cluster on a loopback address whose
--quick run must equal a local run's in every deterministic column, with every measurement
on the resource's node. Every node of every test cluster is checked to be registered in
127.0.0.0/8 (tests send traffic to loopback only)."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench import measuring
from bench.child.records import ProcessResult
from bench.config.sections import MeasurementConfig, RunConfig, physical_cores
from bench.measuring.station import LocalStation, NodeLost
from bench.results.machines import describe_machine, machine_key
from bench.results.row import Result
from bench.results.store import RunStore
from bench.task_kinds import Task
from tests.helpers.probe import fresh_cache
from tests.helpers.ray_nodes import (
    NODE_IP,
    assert_loopback,
    free_port,
    logged_node_addresses,
    node_addresses,
)

N_TEST = 40



def _main(argv):
    from bench.cli import main

    return main(argv)


@pytest.mark.parametrize("argv, message", [
    (["--measure-on", "edge"], "--measure-on needs --executor ray"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address needs --executor ray"),
    (["--executor", "ray", "--measure-on", "a,b"], "is not a resource name"),
    (["--executor", "ray", "--measure-on", " edge"], "is not a resource name"),
    (["--executor", "spark"], "invalid choice"),
])
def test_bad_cluster_options_are_one_line(argv, message, capsys):
    assert _main(["run", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_ray_not_installed_is_one_line(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    assert _main(["run", "--quick", "--executor", "ray"]) == 2
    assert "pip install -e '.[cluster]'" in capsys.readouterr().err


def test_an_address_where_nothing_listens_is_one_line(capsys):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pytest.importorskip("ray")
    assert _main(["run", "--quick", "--executor", "ray", "--ray-address",
                  f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Ray head answers there" in err and len(err.splitlines()) == 1


def test_the_local_path_does_not_import_ray():
    code = ("import sys; from bench import cli, execution, measuring; "
            "from bench.pipeline import runner; "
            "from bench.config.sections import RunConfig; ex = execution.connect(RunConfig()); "
            "ex.station(RunConfig()); cli._parser(); "
            "assert 'ray' not in sys.modules, 'ray imported'; print(type(ex).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LocalExecutor"


def test_machine_description_names_cpu_os_and_runtimes():
    d = describe_machine(ray_node_id="abcdef0123456789")
    assert d["physical_cores"] >= 1 and d["architecture"] and d["platform"]
    assert "torch" in d["runtimes"] and "onnxruntime" in d["runtimes"]
    assert machine_key(d) == f"{d['hostname']} (ray node abcdef01)"
    assert machine_key(describe_machine()) == d["hostname"]


def test_received_results_are_written_where_the_plan_reads_them(tmp_path):
    pytest.importorskip("ray")
    from bench.child.records import JobItem
    from bench.cluster.station import RayStation

    item = JobItem(model="m", variant="", files=(), samples_out=str(tmp_path / "s.npy"),
                   logits_out=str(tmp_path / "l.npy"))
    sent = ProcessResult(model="m", samples_path="/node/s.npy", logits_path="/node/l.npy",
                         val_logits_path=None)
    got = RayStation._received(item, sent, {"/node/s.npy": b"samples", "/node/l.npy": b"logits"},
                               "node-a")
    assert got.samples_path == item.samples_out and got.logits_path == item.logits_out
    assert got.machine == "node-a" and got.val_logits_path is None
    assert Path(item.samples_out).read_bytes() == b"samples"


# -- the plan against a scripted station: a node lost, replaced or not ------------------------

class ScriptedStation(LocalStation):
    """Measures with fake processes on machine 'a'; loses it at the `lose_at`-th process;
    `spare` says whether another machine ('b') holds the resource."""

    def __init__(self, lose_at: int, spare: bool):
        super().__init__(1)
        self.description = {"hostname": "a"}
        self.key, self.lose_at, self.spare, self.calls = "a", lose_at, spare, []
        self.rng = np.random.default_rng(0)
        labels = np.arange(N_TEST) % 2
        self.logits = np.stack([-labels + self.rng.normal(0, .5, N_TEST),
                                labels + self.rng.normal(0, .5, N_TEST)], 1).astype(np.float32)

    def probe(self, *args):
        return {}

    def start(self, backend):
        pass

    def replace(self, backend):
        if not self.spare:
            return False
        self.key = "b"
        return True

    def run(self, job, job_path, backend):
        out = []
        for item in job.items:
            self.calls.append((self.key, item.model))
            if self.key == "a" and len(self.calls) == self.lose_at:
                raise NodeLost("measuring node 10.0.0.9 (deadbeef) lost while measuring "
                               + item.model)
            np.save(item.samples_out, 5.0 * (1 + self.rng.normal(0, .01, 200)))
            if item.predicts:
                np.save(item.logits_out, self.logits)
            out.append(ProcessResult(model=item.model, samples_path=item.samples_out,
                                     logits_path=item.logits_out, seconds=0.1, machine=self.key))
        return out


def _plan(tmp_path, station, models=("teacher", "student", "kd")):
    labels = np.arange(N_TEST) % 2
    data = SimpleNamespace(task=Task("binary", ("neg", "pos")),
                           test=SimpleNamespace(labels=labels, groups=None),
                           val=SimpleNamespace(labels=labels))
    work = tmp_path / "work"
    work.mkdir()
    store = RunStore(tmp_path / "run")
    targets = {b: [measuring.Target(Result(model=m, method="baseline", backend=b, arch="a",
                                           precision="fp32", file_mib=1.0), files=())
                   for m in models] for b in ("onnxruntime", "openvino")}
    cfg = RunConfig(measurement=MeasurementConfig(threads=1, retime_budget_s=0.0, n_boot=100))
    refs = {m: station.logits[:measuring.PARITY_BATCH] for m in models}
    measuring.measure_all(targets, cfg, data, store, measuring.Paths(test=work / "t.npy",
                                                                   val=None, work=work),
                          refs, station)
    return {(r.backend, r.model): r for r in store.rows}, store


def test_a_lost_node_is_replaced_and_its_backend_measured_again_there(tmp_path):
    station = ScriptedStation(lose_at=3, spare=True)  # lost measuring onnxruntime's kd
    rows, store = _plan(tmp_path, station)
    assert all(r.ok for r in rows.values()), rows
    # every onnxruntime row (its teacher included) was timed on the new machine
    assert {r.machine for (b, _), r in rows.items() if b == "onnxruntime"} == {"b"}
    assert {r.machine for (b, _), r in rows.items() if b == "openvino"} == {"b"}
    assert [c for c in station.calls if c[0] == "b"][:3] == [("b", "teacher"), ("b", "student"),
                                                            ("b", "kd")]


def test_a_lost_node_with_no_spare_fails_the_rows_left_naming_it(tmp_path):
    station = ScriptedStation(lose_at=6, spare=False)  # openvino's student (after 4 + 1)
    rows, _ = _plan(tmp_path, station)
    assert all(rows[("onnxruntime", m)].ok for m in ("teacher", "student", "kd"))
    assert rows[("openvino", "teacher")].ok  # measured before the loss: kept
    for m in ("student", "kd"):
        row = rows[("openvino", m)]
        assert row.status == "failed" and "10.0.0.9 (deadbeef) lost" in row.error, row


class TwoMachines(ScriptedStation):
    """Two machines holding the resource: each backend placed on its own, measured at once."""

    parallel = 2

    def __init__(self):
        super().__init__(lose_at=0, spare=False)
        import threading

        self.placements, self.lock, self.active, self.peak = {}, threading.Lock(), set(), 0

    def place(self, backend):
        return self.placements.setdefault(backend, "ab"[len(self.placements) % 2])

    def run(self, job, job_path, backend):
        import time

        with self.lock:
            self.active.add(backend)
            self.peak = max(self.peak, len(self.active))
        self.key = self.placements[backend]
        time.sleep(0.05)  # both backends in flight
        out = super().run(job, job_path, backend)
        with self.lock:
            self.active.discard(backend)
        return [r.__class__(**{**r.__dict__, "machine": self.placements[backend]}) for r in out]


def test_backends_on_machines_of_their_own_are_measured_at_once(tmp_path):
    station = TwoMachines()
    rows, store = _plan(tmp_path, station)
    assert station.peak == 2  # the two backends' processes overlapped
    assert all(r.ok for r in rows.values()), rows
    assert {r.machine for (b, _), r in rows.items() if b == "onnxruntime"} == {"a"}
    assert {r.machine for (b, _), r in rows.items() if b == "openvino"} == {"b"}
    reread = RunStore(tmp_path / "run", resume=True).rows  # the store stayed whole
    assert len(reread) == len(rows) == 6


# -- a real two-node cluster on this machine --------------------------------------------------

RESOURCE = "medbench-test-edge"
DETERMINISTIC = ["model", "backend", "precision", "params", "params_nonzero", "buffers",
                 "weights_mib", "file_mib", "file_gz_mib", "compression_ratio", "macs",
                 "auc_roc", "auc_ci_low", "auc_ci_high"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (this machine's cores as CPUs, trains) and an edge node (no CPUs for tasks,
    the custom resource: measures), both at NODE_IP, token-authenticated, with their own
    temporary folders and bench caches."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("cluster")
    # Ray's socket paths live under each node's temp dir and must fit AF_UNIX's 107 bytes
    short = Path(tempfile.mkdtemp(prefix="mbray-"))
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # token authentication with a token of its own (Ray 2.60 asks for one; it would
    # otherwise read or write ~/.ray/auth_token)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    port = free_port()
    address = f"{NODE_IP}:{port}"
    common = ["--node-ip-address", NODE_IP, "--disable-usage-stats"]
    # as many CPUs as the local run's default --train-threads, which the cluster's then is
    head = [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard=false",
            "--num-cpus", str(physical_cores()), "--temp-dir", str(short / "h"), *common]
    edge = [ray_bin, "start", "--address", address, "--num-cpus", "0",
            "--resources", json.dumps({RESOURCE: 1}), "--temp-dir", str(short / "e"), *common]
    try:
        subprocess.run(head, env={**env, "MEDBENCH_CACHE": str(fresh_cache(root / "head-cache"))},
                       check=True, timeout=180, capture_output=True)
        subprocess.run(edge, env={**env, "MEDBENCH_CACHE": str(fresh_cache(root / "edge-cache"))},
                       check=True, timeout=180, capture_output=True)
        nodes = subprocess.run(
            [sys.executable, "-c", f"import json, ray; ray.init(address={address!r}); print(json.dumps("
             "[(n['NodeID'], n['Resources']) for n in ray.nodes() if n['Alive']]))"],
            env=env, check=True, timeout=120, capture_output=True, text=True)
        ids = {("edge" if RESOURCE in r else "head"): node for node, r in
               json.loads(nodes.stdout.strip().splitlines()[-1])}
        assert_loopback(node_addresses(address, env))
        yield SimpleNamespace(address=address, root=root, short=short, env=env, ids=ids)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, timeout=120, capture_output=True)
        shutil.rmtree(short, ignore_errors=True)


def _results(run: Path) -> pd.DataFrame:
    df = pd.read_csv(run / "results.csv", keep_default_na=False, na_values=[""])
    return df.sort_values(["backend", "model", "precision"]).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.cluster
def test_quick_run_on_a_two_node_cluster_equals_the_local_run(cluster, local_quick_run,
                                                              tmp_path):
    root, local = local_quick_run  # a local run that did not import Ray (conftest)
    assert local.returncode == 0, local.stderr[-3000:]
    env = {**cluster.env, "MEDBENCH_CACHE": str(fresh_cache(tmp_path / "driver-cache"))}
    remote = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--executor", "ray", "--ray-address",
         cluster.address, "--measure-on", RESOURCE, "--methods", "kd,prune,quant",
         "--backends", "onnxruntime", "--out", str(tmp_path / "ray")], env=env,
        capture_output=True, text=True, timeout=900)
    assert remote.returncode == 0, remote.stderr[-3000:]

    # one backend is enough to compare: every model is trained on the head either way, and
    # the measuring path is the same for every backend (the other two cost 14 rows here)
    a, b = _results(root / "run"), _results(tmp_path / "ray")
    a = a[a["backend"] == "onnxruntime"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a[DETERMINISTIC], b[DETERMINISTIC])
    base = [df["status"].str.split(";").str[0] for df in (a, b)]  # "unstable" is timing
    assert (base[0] == base[1]).all()

    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    execution = manifest["execution"]
    assert execution["authenticated"] is True and execution["train_threads"] == physical_cores()
    assert execution["train_threads_from"].startswith("the cluster")
    token = cluster.env["RAY_AUTH_TOKEN"].encode()
    written = [p for p in (tmp_path / "ray").rglob("*") if p.is_file() and token in p.read_bytes()]
    assert not written and token.decode() not in remote.stderr + remote.stdout, written
    assert_loopback(logged_node_addresses(remote.stderr))
    assert_loopback(m["ip"] for m in manifest["machines"].values())
    machines = manifest["machines"]
    assert len(machines) == 1, machines  # one edge node: every backend measured there
    (key, edge), = machines.items()
    assert edge["ray_node_id"] == cluster.ids["edge"] and edge["runtimes"]["onnxruntime"]
    measured = b[b["status"].str.startswith("ok")]
    assert set(measured["machine"]) == {key}
    # the teacher and the chains were trained on the head (the edge node offers no CPU)
    log = remote.stderr + remote.stdout
    assert f"({cluster.ids['head'][:8]})" in log and f"({cluster.ids['edge'][:8]})" not in log.split(
        "measuring on")[0], log[-3000:]
    # trained on the cluster (into the head's own cache), not read from the driver's
    assert list((cluster.root / "head-cache" / "teachers").glob("*.pt"))


@pytest.mark.slow
@pytest.mark.cluster
def test_search_on_the_cluster_uses_tune_with_optuna_on_the_study(cluster, tmp_path):
    """`bench search --executor ray`: Ray Tune trials with OptunaSearch telling the search's
    own SQLite study; trials measured on the edge node; finalists chosen and tested as a
    local search does."""
    optuna = pytest.importorskip("optuna")
    env = {**cluster.env, "MEDBENCH_CACHE": str(fresh_cache(tmp_path / "driver-cache"))}
    out = tmp_path / "search"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "search", "--quick", "--trials", "3", "--executor", "ray",
         "--ray-address", cluster.address, "--measure-on", RESOURCE, "--margin", "0.5",
         "--out", str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    log = proc.stderr + proc.stdout
    assert "with Ray Tune (Optuna as its search algorithm)" in log, log[-3000:]
    assert_loopback(logged_node_addresses(log))
    study = optuna.load_study(study_name="medbench-search", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(study.trials) == 3 and done, [(t.state, t.user_attrs) for t in study.trials]
    edge = f"(ray node {cluster.ids['edge'][:8]})"
    for t in done:
        assert t.user_attrs["machine"].endswith(edge)
        assert t.user_attrs["val_delta_ci_low"] <= t.user_attrs["val_delta_auc"]
        assert "constraint" in t.user_attrs and t.values[0] == t.user_attrs["latency_ms"]
    state = json.loads((out / "search.json").read_text())
    assert state["finalists"] is not None and (out / "trials.csv").exists()
    if state["finalists"]:  # measured once on test, on the edge node, by a run
        rows = _results(out / "finalists")
        assert all(m.endswith(edge) for m in rows["machine"].dropna() if m)


@pytest.mark.slow
@pytest.mark.cluster
def test_measuring_nodes_killed_mid_run_retry_elsewhere_then_fail_naming_the_node(cluster,
                                                                                 tmp_path):
    """A third node holds a resource of its own. It is killed (SIGKILL to its raylet and
    workers) during ONNX Runtime's pass and a fourth node with the resource is started:
    that backend is measured again there; that one is killed during OpenVINO's pass: with
    no node left holding the resource, OpenVINO's rows fail naming the lost node. Rows measured before each loss
    keep their figures, the report groups rows by machine, and the run exits 1."""
    import re

    import psutil

    resource = "medbench-test-doomed"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temps = [cluster.short / f"d{i}" for i in range(2)]
    temp_of: dict = {}

    def start(temp: Path) -> None:
        """A node holding the resource; one at a time, so the run measures one backend at
        a time and the second node is the first one's replacement."""
        started = subprocess.run([ray_bin, "start", "--address", cluster.address, "--num-cpus",
                                  "0", "--resources", json.dumps({resource: 1}), "--temp-dir",
                                  str(temp), "--node-ip-address", NODE_IP,
                                  "--disable-usage-stats"],
                                 env=cluster.env, timeout=180, capture_output=True, text=True)
        assert started.returncode == 0, started.stderr[-2000:]
        nodes = subprocess.run(
            [sys.executable, "-c", f"import json, ray; ray.init(address={cluster.address!r}); "
             "print(json.dumps([(n['NodeID'], n['RayletSocketName']) for n in ray.nodes() "
             "if n['Alive']]))"], env=cluster.env, check=True, timeout=120,
            capture_output=True, text=True)
        temp_of.update({node[:8]: temp for node, socket in
                        json.loads(nodes.stdout.splitlines()[-1]) if socket.startswith(str(temp))})

    def kill(node: str) -> None:
        victims = [p for p in psutil.process_iter(["cmdline"])
                   if str(temp_of[node]) in " ".join(p.info["cmdline"] or [])]
        assert victims, f"no process of node {node}"
        for p in victims:
            p.kill()

    start(temps[0])
    env = {**cluster.env, "MEDBENCH_CACHE": str(fresh_cache(tmp_path / "driver-cache"))}
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--quick", "--methods", "quant.dynamic",
         "--executor", "ray", "--ray-address", cluster.address, "--measure-on", resource,
         "--out", str(run)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, on, killed, passes = [], None, [], set()
    try:
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"measuring on \S+ \(ray node (\w{8})\)", line)
            if found:
                on = found[1]
            begins = re.search(r"(onnxruntime|openvino): measuring \d", line)
            if begins and begins[1] not in passes:  # each backend's first pass, once
                passes.add(begins[1])
                kill(on)
                killed.append(on)
                if len(killed) == 1:  # the replacement, up before the loss is noticed
                    start(temps[1])
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines)
    (tmp_path / "log.txt").write_text(log)
    assert code == 1 and len(killed) == 2, log[-3000:]
    assert_loopback(logged_node_addresses(log))
    assert_loopback(node_addresses(cluster.address, cluster.env))  # the dead ones too
    rows = _results(run)
    by = {b: rows[rows["backend"] == b] for b in ("torch", "onnxruntime", "openvino")}
    first, second = (f"(ray node {k})" for k in killed)
    # torch: measured on the first node before it was lost
    assert by["torch"]["status"].str.startswith("ok").all()
    assert by["torch"]["machine"].str.endswith(first).all()
    # onnxruntime: lost with the first node, measured again on the second, teacher included
    assert by["onnxruntime"]["status"].str.startswith("ok").all(), by["onnxruntime"]
    assert by["onnxruntime"]["machine"].str.endswith(second).all()
    # openvino: lost with the second node, none left: failed, naming it
    failed = by["openvino"][by["openvino"]["status"] != "n/a"]
    assert (failed["status"] == "failed").all(), failed[["model", "status", "error"]]
    assert failed["error"].str.contains(f"({killed[1]}) lost", regex=False).all(), \
        failed["error"].tolist()
    assert "no alive node of the cluster advertises" in log
    machines = json.loads((run / "manifest.json").read_text())["machines"]
    assert sorted(k[-9:-1] for k in machines) == sorted(killed)
    assert all("lost" in m for m in machines.values()), machines
    html = (run / "report.html").read_text()  # grouped: two machines, and the rows neither timed
    for key in machines:
        assert f"<h3>Measured on {key}</h3>" in html
    assert "<h3>Not measured</h3>" in html


def test_report_groups_rows_by_the_machine_they_were_measured_on():
    from bench.results.machines import machine_line
    from reports.provenance import by_machine

    rows = [{"backend": "torch", "model": "teacher", "machine": "a"},
            {"backend": "torch", "model": "q", "machine": ""},  # n/a: its backend's machine
            {"backend": "onnxruntime", "model": "teacher", "machine": "b"},
            {"backend": "openvino", "model": "teacher", "machine": ""}]  # never timed
    groups = by_machine(rows)
    assert list(groups) == ["a", "b", ""]
    assert [r["model"] for r in groups["a"]] == ["teacher", "q"]
    line = machine_line({"cpu": "X", "physical_cores": 4, "architecture": "aarch64",
                         "platform": "Linux", "runtimes": {"onnxruntime": "1.32.0"},
                         "ray_node_id": "0123456789", "ip": "10.0.0.7", "lost": "gone"})
    assert line == ("X, 4 cores, aarch64, Linux; onnxruntime 1.32.0; Ray node 01234567 at "
                    "10.0.0.7; LOST: gone")
    assert machine_line({"cpu": "Y", "cpu_vendor": "arm", "cpu_model_id": "0x41/0xd0c/0x3",
                         "isa": ["asimd", "i8mm"]}).startswith("Y (arm 0x41/0xd0c/0x3; asimd i8mm), ")


@pytest.mark.slow
@pytest.mark.cluster
def test_a_killed_cluster_run_resumes_with_what_the_cluster_finished(cluster, tmp_path):
    """The bench is SIGKILLed once the cluster has sent back some trained steps; the same
    command then continues the run: those steps are loaded from the run directory, not
    trained again, and the run finishes with every row."""
    import signal

    env = {**cluster.env, "MEDBENCH_CACHE": str(fresh_cache(tmp_path / "driver-cache"))}
    command = [sys.executable, "-m", "bench", "run", "--quick", "--methods", "kd,prune.structured",
               "--backends", "onnxruntime", "--executor", "ray", "--ray-address",
               cluster.address, "--measure-on", RESOURCE, "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    made = []
    try:
        for line in proc.stdout:
            if ": made on node " in line:
                made.append(line.split("]", 1)[1].split(":")[0].strip())
                if len(made) == 2:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(made) == 2, made
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stderr + again.stdout
    assert_loopback(logged_node_addresses(log))
    assert "continuing the unfinished run" in log
    for name in made:
        assert f"{name}: reusing the model an earlier attempt at this run built" in log, name
        assert f"{name}: made on node" not in log, name
    rows = _results(tmp_path / "run")
    assert set(rows["model"]) == {"teacher", "student", "kd", "prune.structured"}
    assert rows["status"].str.startswith("ok").all()


@pytest.mark.slow
@pytest.mark.cluster
def test_two_measuring_nodes_measure_two_backends_at_once(cluster, tmp_path):
    """Two nodes hold the resource: the two backends are placed one on each and measured
    at the same time (each node still one measurement at a time)."""
    resource = "medbench-test-pair"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    for i in range(2):
        started = subprocess.run([ray_bin, "start", "--address", cluster.address, "--num-cpus",
                                  "0", "--resources", json.dumps({resource: 1}), "--temp-dir",
                                  str(cluster.short / f"p{i}"), "--node-ip-address", NODE_IP,
                                  "--disable-usage-stats"],
                                 env=cluster.env, timeout=180, capture_output=True, text=True)
        assert started.returncode == 0, started.stderr[-2000:]
    env = {**cluster.env, "MEDBENCH_CACHE": str(fresh_cache(tmp_path / "driver-cache"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--methods", "quant.dynamic",
         "--backends", "torch,onnxruntime", "--executor", "ray", "--ray-address",
         cluster.address, "--measure-on", resource, "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "measuring 2 backends on 2 machines at once" in proc.stderr
    assert_loopback(logged_node_addresses(proc.stderr))
    assert_loopback(node_addresses(cluster.address, cluster.env))
    rows = _results(tmp_path / "run")
    machines = {b: set(rows[rows["backend"] == b]["machine"]) for b in ("torch", "onnxruntime")}
    assert all(len(m) == 1 for m in machines.values()), machines
    assert machines["torch"] != machines["onnxruntime"], machines
    assert len(json.loads((tmp_path / "run" / "manifest.json").read_text())["machines"]) == 2
