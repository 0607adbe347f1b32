"""Joining a Ray cluster is authenticated (bench.cluster.auth, bench.cluster.connect):
a cluster without authentication is refused unless --allow-unauthenticated-ray, a wrong
or missing token fails in one line within seconds, writing nothing, and the bench's own
Ray instance is token-authenticated on a loopback address without writing a token file.
One-node heads at a loopback address, stopped by killing their own processes only."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.probe import fresh_cache
from tests.helpers.ray_nodes import NODE_IP, assert_loopback, free_port, node_addresses

pytestmark = pytest.mark.cluster

#: a refusal must come this fast (a wrong token left to ray.init: about 20 s, a traceback)
FAST_S = 30


def _start_head(mode: str, token: str | None):
    """A one-CPU head at NODE_IP with RAY_AUTH_MODE=mode; (address, env it was started
    with, its temp folder)."""
    temp = Path(tempfile.mkdtemp(prefix="mbsec-"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": mode}
    env.pop("RAY_AUTH_TOKEN", None)
    if token:
        env["RAY_AUTH_TOKEN"] = token
    port = free_port()
    subprocess.run([str(Path(sys.executable).with_name("ray")), "start", "--head", "--port",
                    str(port), "--node-ip-address", NODE_IP, "--include-dashboard=false",
                    "--num-cpus", "1", "--temp-dir", str(temp), "--disable-usage-stats"],
                   env=env, check=True, timeout=180, capture_output=True)
    return f"{NODE_IP}:{port}", env, temp


def _stop(temp: Path) -> None:
    """Kill this head's processes (their command lines name its temp folder), leaving any
    other test cluster alone (`ray stop` would stop every one on the machine)."""
    victims = [p for p in psutil.process_iter(["cmdline"])
               if str(temp) in " ".join(p.info["cmdline"] or [])]
    for p in list(victims):
        try:  # the agents a raylet starts rename themselves (ray::DashboardAgent)
            victims += p.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:  # gone with its parent
            pass
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def open_head():
    pytest.importorskip("ray")
    address, env, temp = _start_head("disabled", None)
    yield address
    _stop(temp)


@pytest.fixture(scope="module")
def token_head():
    pytest.importorskip("ray")
    token = secrets.token_hex(16)
    address, env, temp = _start_head("token", token)
    assert_loopback(node_addresses(address, env))
    yield address, token
    _stop(temp)


def _bench(address: str, tmp_path: Path, *extra, token: str | None = None):
    """`bench run --quick --executor ray` against `address` as a user with `token` (and an
    empty home: no ~/.ray/auth_token); (CompletedProcess, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path / "home"), MEDBENCH_CACHE=str(fresh_cache(tmp_path / "cache")))
    if token:
        env["RAY_AUTH_TOKEN"] = token
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--quick", "--executor", "ray",
                           "--ray-address", address, "--methods", "quant.dynamic", "--out",
                           str(tmp_path / "run"), *extra],
                          env=env, capture_output=True, text=True, timeout=300)
    return proc, time.perf_counter() - start


def _one_line_refusal(proc, seconds: float, tmp_path: Path) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err[-2000:]
    assert seconds < FAST_S, seconds
    assert not (tmp_path / "run").exists()  # nothing written for a run that never began
    return err


def test_a_cluster_without_authentication_is_refused_in_one_line(open_head, tmp_path):
    proc, seconds = _bench(open_head, tmp_path)
    err = _one_line_refusal(proc, seconds, tmp_path)
    assert "this Ray cluster has no authentication" in err and "RAY_AUTH_MODE=token" in err
    assert "--allow-unauthenticated-ray" in err


def test_the_opt_out_joins_an_open_cluster_loudly_and_says_so(open_head):
    code = ("from bench.cluster.connect import connect; import ray; "
            f"j = connect({open_head!r}, allow_unauthenticated=True); "
            "print(j.authenticated, [n['NodeManagerAddress'] for n in ray.nodes()]); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == f"False ['{NODE_IP}']"
    assert "WITHOUT AUTHENTICATION (--allow-unauthenticated-ray)" in out.stderr


def test_a_wrong_token_fails_in_one_line_within_seconds(token_head, tmp_path):
    address, token = token_head
    wrong = secrets.token_hex(16)
    proc, seconds = _bench(address, tmp_path, token=wrong)
    err = _one_line_refusal(proc, seconds, tmp_path)
    assert "the cluster refused this token (authentication failed)" in err, err
    assert wrong not in proc.stderr + proc.stdout and token not in proc.stderr + proc.stdout


def test_no_token_at_all_fails_in_one_line(token_head, tmp_path):
    address, _ = token_head
    proc, seconds = _bench(address, tmp_path)
    err = _one_line_refusal(proc, seconds, tmp_path)
    assert "requires a token and none was found" in err, err


def test_the_right_token_is_accepted(token_head, tmp_path):
    from bench.cluster import auth

    address, token = token_head
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")},
           "RAY_AUTH_TOKEN": token}
    out = subprocess.run([sys.executable, "-m", "bench.cluster.auth", address], env=env,
                         capture_output=True, text=True, timeout=60)
    answer = auth.Answer(**json.loads(out.stdout.strip().splitlines()[-1]))
    assert answer == auth.Answer(open=False, has_token=True, token_ok=True)
    assert auth.refusal(address, answer, allow_open=False) is None


@pytest.fixture
def squatter():
    """A cluster without authentication that `ray start` left in Ray's default temp folder
    (/tmp/ray/ray_current_cluster names it): what `ray.init()` with no address would join.
    Stopped by killing its own session's processes."""
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    port = free_port()
    subprocess.run([str(Path(sys.executable).with_name("ray")), "start", "--head", "--port",
                    str(port), "--node-ip-address", NODE_IP, "--num-cpus", "1", "--resources",
                    json.dumps({"squatter": 1}), "--include-dashboard=false",
                    "--disable-usage-stats"], env=env, check=True, timeout=180,
                   capture_output=True)
    session = next(a.split("=", 1)[1] for p in psutil.process_iter(["cmdline"])
                   if f"--gcs_server_port={port}" in (p.info["cmdline"] or [])
                   for a in p.info["cmdline"] if a.startswith("--session-dir="))
    yield port
    _stop(Path(session))
    current = Path("/tmp/ray/ray_current_cluster")
    if current.exists() and str(port) in current.read_text():
        current.unlink()


def test_the_benchs_own_ray_instance_is_authenticated_on_loopback(tmp_path, squatter):
    """No address: a Ray instance started for the run, token-authenticated with a token
    held in memory (no ~/.ray/auth_token written), its node on a loopback address; never
    the unauthenticated cluster another `ray start` left on this machine."""
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0")
    code = ("from bench.cluster.connect import connect; import ray, os; j = connect(None); "
            "assert not any('squatter' in n['Resources'] for n in ray.nodes()), 'joined it'; "
            "print(j.authenticated, os.environ['RAY_AUTH_MODE'], "
            "[n['NodeManagerAddress'] for n in ray.nodes()]); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    authenticated, mode, nodes = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (authenticated, mode) == ("True", "token")
    assert_loopback(json.loads(nodes.replace("'", '"')))
    assert not list((tmp_path / "home").rglob("auth_token"))


def _certificates(folder: Path) -> dict:
    """A throwaway CA and a node certificate for NODE_IP, made with openssl; the RAY_TLS_*
    variables that point at them."""
    openssl = shutil.which("openssl") or pytest.skip("openssl not installed")
    run = lambda *a: subprocess.run([openssl, *a], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "ca.key",
        "-out", "ca.crt", "-subj", "/CN=medbench-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
        "-subj", f"/CN={NODE_IP}")
    (folder / "ext.cnf").write_text(f"subjectAltName=IP:{NODE_IP}\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "node.crt", "-days", "1", "-extfile", "ext.cnf")
    return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(folder / "node.crt"),
            "RAY_TLS_SERVER_KEY": str(folder / "node.key"), "RAY_TLS_CA_CERT": str(folder / "ca.crt")}


def test_a_tls_cluster_with_a_token_is_joined_over_tls(tmp_path):
    """Ray 2.60's TLS (RAY_USE_TLS and its certificates on every node and the bench) with
    token authentication: the bench's check passes through TLS, joins, and runs a task."""
    pytest.importorskip("ray")
    tls = _certificates(tmp_path)
    token = secrets.token_hex(16)
    os.environ.update(tls)  # _start_head copies the environment
    try:
        address, env, temp = _start_head("token", token)
    finally:
        for key in tls:
            os.environ.pop(key)
    try:
        code = ("from bench.cluster.connect import connect; import ray; "
                f"j = connect({address!r}); f = ray.remote(lambda x: 2 * x); "
                "print(j.authenticated, j.tls, ray.get(f.remote(21))); ray.shutdown()")
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=180, env={**base, **tls, "RAY_AUTH_TOKEN": token})
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "True True 42"
    finally:
        _stop(temp)
