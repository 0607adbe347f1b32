"""`bench search` on Optuna's and Ray Tune's public APIs only: their private attributes
(a study's storage, a trial's id, OptunaSearch's trial table) change without notice. A
killed search's running trials failed through a study that refuses private reads, no
private attribute named in bench/search/, and Ray Tune's searcher driven without a
cluster."""

import math
import time

import optuna
import pytest
from optuna.trial import TrialState

from bench.search import space, study

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Public:
    """A study as the bench may use it: Optuna's public API. A private attribute (`_`
    first) raises, as a later Optuna may rename or remove it."""

    def __init__(self, wrapped):
        self.__dict__["wrapped"] = wrapped

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(f"Study.{name} is private to Optuna")
        return getattr(self.__dict__["wrapped"], name)


def test_a_stopped_attempts_running_trial_becomes_failed_and_nothing_else_changes(tmp_path):
    o = study.Objectives(("latency",), "onnxruntime")
    s = study.open_study(tmp_path / "study.db", o, 0, 10)
    done = s.ask()
    s.tell(done, 1.5)
    s.ask()  # left RUNNING, as a killed search leaves it
    again = study.open_study(tmp_path / "study.db", o, 0, 10)
    assert study.close_interrupted(Public(again), tmp_path / "study.db") == 1  # public API
    states = [t.state for t in again.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    assert again.trials[1].user_attrs["error"] == study.INTERRUPTED
    assert again.trials[0].values == [1.5] and study.finished(again) == 2


PRIVATE = {"_storage", "_study_id", "_trial_id", "_ot_trials", "_ot_study",
           "_completed_trials", "_space", "_metric", "_mode"}


def test_the_search_reads_no_private_attribute_of_optuna_or_ray_tune():
    """Optuna and Ray Tune's private attributes (the storage behind a study, a trial's
    id, OptunaSearch's trial table) change without notice; the search uses their public
    APIs (ask/tell, Trial.set_user_attr, a storage it opens itself)."""
    import ast
    from pathlib import Path

    import bench.search

    found = []
    for path in sorted(Path(bench.search.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not found, found


def test_ray_tunes_searcher_tells_the_study_what_a_local_search_tells_it(tmp_path):
    """The Ray Tune searcher on the search's study (a study that refuses private reads):
    a finished trial's figures, constraint and objective; a failed one's error."""
    pytest.importorskip("ray.tune.search.optuna")
    from bench.search import ray_tune

    o = study.Objectives(("latency",), "onnxruntime")
    path = tmp_path / "study.db"
    s = study.open_study(path, o, 0, 10)
    templates = space.parse("prune.structured:ratio=0.2..0.8/0.1")
    searcher = ray_tune._searcher(Public(s), path, o, templates, 0.05, {}, time.perf_counter())
    done = searcher.suggest("tune-a")
    figures = {"model": done["model"], "latency_ms_process": 2.0, "file_mib": 1.0,
               "precision": "fp32", "notes": [], "params": 10, "macs": 100, "val_auc": 0.9,
               "val_delta_auc": 0.0, "val_delta_ci_low": -0.01, "val_delta_ci_high": 0.01,
               "val_verdict": "non-inferior", "build_s": 1.0, "machine": "m"}
    searcher.on_trial_complete("tune-a", figures)
    failed = searcher.suggest("tune-b")
    searcher.on_trial_complete("tune-b", {"model": failed["model"], "latency_ms": math.nan,
                                          "error": "out of memory"})
    a, b = s.get_trials()
    assert done["model"].startswith("prune.structured") and a.user_attrs["model"] == done["model"]
    assert a.state == TrialState.COMPLETE and a.values == [2.0]
    assert a.user_attrs["val_auc"] == 0.9 and a.user_attrs["latency_processes"] == 1
    assert a.user_attrs["constraint"] == pytest.approx(-0.05 + 0.01)
    assert b.state == TrialState.FAIL and b.user_attrs["error"] == "out of memory"
