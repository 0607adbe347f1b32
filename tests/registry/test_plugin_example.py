"""The outside method of docs/architecture.md ("Adding things"), kept as
docs/examples/lowrank/: installed with pip into a folder of its own, it is listed with its
parameters' ranges, a value out of range exits 2 before anything trains, and a run of it
killed during a chain's fine-tune resumes to the rows of an uninterrupted run, its
restructured models reloaded from the run directory (Method.restore)."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.plugin_dist import install_folder
from tests.pipeline.test_resume import DETERMINISTIC, _rows, assert_nothing_half_written

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "lowrank"
#: the smallest run that has both a step on the teacher and one on a saved parent
ARGS = ["run", "--quick", "--methods", "lowrank,kd+lowrank", "--backends", "onnxruntime"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return install_folder(EXAMPLE, "medbench-lowrank", tmp_path_factory.mktemp("lowrank"))


def _env(site: Path, **extra) -> dict:
    """The plugin on PYTHONPATH; the tests' cache (a teacher other --quick tests trained)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), **extra}


def _bench(args, site: Path, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, env=_env(site, **env), cwd=cwd, timeout=900)


def test_the_example_stays_one_short_file_and_the_docs_show_its_own_code():
    source = (EXAMPLE / "medbench_lowrank.py").read_text()
    assert len(source.splitlines()) <= 80
    assert 'lowrank = "medbench_lowrank"' in (EXAMPLE / "pyproject.toml").read_text()
    doc = (ROOT / "docs" / "architecture.md").read_text()
    contract = doc[doc.index("### The method contract"):]
    shown = contract[contract.index("```python\n") + 10:]
    shown = shown[:shown.index("```")]
    assert "class LowRank(Method)" in shown and shown in source


@pytest.mark.slow
def test_the_plugin_is_listed_with_its_ranges(site, tmp_path):
    proc = _bench(["list"], site, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "  lowrank" in lines, proc.stdout[:2000]
    shown = "\n".join(lines[lines.index("  lowrank"):][:10])
    assert re.search(r"rank_ratio\s+float\s+default 0.5\s+in \(0, 1\]", shown), shown
    assert re.search(r"distil_from\s+str\s+default 'parent'\s+parent\|teacher", shown), shown
    assert re.search(r"unlabelled\s+bool\s+default false\s+true\|false", shown), shown


@pytest.mark.slow
def test_a_value_out_of_range_exits_2_before_training(site, tmp_path):
    proc = _bench([*ARGS[:3], "lowrank:rank_ratio=1.5", "--out", str(tmp_path / "run")], site,
                  tmp_path, MEDBENCH_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == ["error: parameter rank_ratio: 1.5 is not in (0, 1]"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "teachers").exists()


def _run_and_kill(args, site: Path, cwd: Path, pattern: str) -> list[str]:
    """Start the run; SIGKILL it when a log line matches `pattern`."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(site), cwd=cwd)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    return lines


@pytest.mark.slow
def test_a_run_through_the_plugin_resumes_to_the_same_rows(site, tmp_path):
    reference = _bench([*ARGS, "--out", str(tmp_path / "reference")], site, tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "resumed"
    # killed during the chain's fine-tune: lowrank (on the teacher) and kd are saved
    killed = _run_and_kill([*ARGS, "--out", str(out)], site, tmp_path, r"\] kd\+lowrank: step")
    assert any("lowrank: step" in line and "kd+" not in line for line in killed)
    assert_nothing_half_written(out)
    proc = _bench([*ARGS, "--out", str(out)], site, tmp_path)
    log = proc.stderr + proc.stdout
    assert proc.returncode == 0, log[-3000:]
    for name in ("student", "lowrank", "kd"):  # the factorised model among them
        assert f"{name}: reusing the model an earlier attempt at this run built" in log, name
    assert "cannot be rebuilt" not in log and "lowrank: step" not in log.replace("kd+lowrank", "")
    want, got = _rows(tmp_path / "reference"), _rows(out)
    assert set(got) == set(want) and ("kd+lowrank", "onnxruntime", "fp32") in got
    for key, row in want.items():
        for column in DETERMINISTIC:
            assert got[key][column] == row[column], (key, column)
    teacher = want["teacher", "onnxruntime", "fp32"]
    assert int(want["lowrank", "onnxruntime", "fp32"]["params"]) < int(teacher["params"])
    assert "layers factorised at rank ratio 0.5" in got["lowrank", "onnxruntime", "fp32"]["notes"]
