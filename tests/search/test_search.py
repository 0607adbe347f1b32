"""`bench search`: the space parser, the objectives, the constraint and the finalists'
choice (fast, on studies made here), the sealed test labels; and (slow) a real --quick
search that never reads the test labels before its finalists are chosen, and one that is
killed mid-search and resumed without losing a finished trial."""

import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

import methods
from bench.search import SearchOptions, parse_duration, space, study
from bench.search import finalists as fin
from bench.search.sealed import SealedLabels, SealedSplitError, seal

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------ space

def test_space_templates_ranges_grids_and_choices():
    (t,) = space.parse("kd:temperature=2|4|8,alpha=0.3..0.9/0.1+prune.structured:ratio=0.1..0.8,"
                       "round_to=4+quant.static:calibration_size=16..64,per_channel=true|false")
    kd, prune, quant = t.steps
    assert dict(kd.searched)["temperature"] == space.Choice((2.0, 4.0, 8.0))
    assert dict(kd.searched)["alpha"] == space.Range(0.3, 0.9, 0.1)
    assert dict(prune.searched)["ratio"] == space.Range(0.1, 0.8, None)
    assert prune.fixed == (("round_to", 4),)
    assert dict(quant.searched) == {"calibration_size": space.Range(16, 64, None),
                                    "per_channel": space.Choice((True, False))}
    assert t.dimensions == 5


def test_the_default_space_parses_and_every_draw_is_a_chain_the_bench_runs():
    templates = space.parse(space.DEFAULT_SPACE)
    assert len(templates) == 5
    s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = s.ask()
        chain = space.suggest(trial, templates)
        name = methods.chain_name(chain)
        # the finalists run takes the name as --methods: it must mean the same chain
        assert methods.expand(name) == [chain]
        ratio = dict(chain[-1].params).get("ratio") if chain[-1].method == "prune.structured" else None
        assert ratio is None or (0.2 <= ratio <= 0.8 and math.isclose(ratio * 20, round(ratio * 20)))
        seen.add(tuple(s.method for s in chain))
        s.tell(trial, 0.0)
    assert len(seen) == 5  # every template drawn


def test_a_range_takes_the_ends_it_leaves_out_from_the_declared_bounds():
    (t,) = space.parse("kd:alpha=..,temperature=1..8+prune.structured:iterative_steps=2..")
    kd, prune = t.steps
    assert dict(kd.searched)["alpha"] == space.Range(0.0, 1.0, None)
    assert dict(prune.searched)["iterative_steps"] == space.Range(2, 100, None)


@pytest.mark.parametrize("spec, message", [
    ("kd:temperature=8..2", "from low to high"),
    ("kd:tempo=1..2", "has no parameter 'tempo'"),
    ("kd:temperature=1..x", "not a float"),
    ("prune:ratio=0.1..0.5", "is a family"),
    ("quant.static:per_channel=0..1", "takes choices"),
    ("quant.static+kd", "last step of a chain"),
    ("student", "baselines are measured"),
    ("kd:alpha=0.1..0.9/2", "step 2.0 must be above 0"),
    ("kd:alpha=0.3..1.5", "parameter alpha: 1.5 is not in [0, 1]"),
    ("prune.structured:ratio=0.2..", "leaves out its high end, which its bounds (0, 1) do not"),
    ("quant.static:max_drop=..0.1", "leaves out its low end, which it does not declare"),
    ("kd:temperature=2|2", "repeats a choice"),
    ("kd:alpha", "key=value"),
    ("nosuch", "unknown method"),
    ("", "empty"),
])
def test_a_bad_space_is_one_line_naming_the_part(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        space.parse(spec)
    assert "\n" not in str(err.value)


def test_objectives_and_durations():
    o = study.parse_objectives("latency:openvino,file_mib", "onnxruntime")
    assert o.names == ("latency", "file_mib") and o.backend == "openvino"
    assert o.columns == ["latency_ms", "file_mib"]
    assert study.parse_objectives("macs", "onnxruntime").backend == "onnxruntime"
    for bad, message in [("speed", "unknown objective"), ("macs:torch", "same on every backend"),
                         ("latency:torch,file_mib:openvino", "one backend per search"),
                         ("latency,latency", "named twice"), ("", "empty")]:
        with pytest.raises(ValueError, match=message):
            study.parse_objectives(bad, "onnxruntime")
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1.5h")] == [90, 90, 600, 5400]
    for bad in ("ten minutes", "0", "-5m", ""):
        with pytest.raises(ValueError, match="--time"):
            parse_duration(bad)


# ------------------------------------------------------------------ constraint, choice

def test_the_constraint_is_the_lower_end_of_the_validation_interval():
    assert study.constraint({"val_delta_ci_low": -0.01}, 0.02) == pytest.approx(-0.01)
    assert study.constraint({"val_delta_ci_low": -0.03}, 0.02) == pytest.approx(0.01)
    assert study.constraint({"val_delta_ci_low": float("nan")}, 0.02) == math.inf
    assert study.constraint({}, 0.02) == math.inf


def _study(directions, trials):
    s = optuna.create_study(directions=directions)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for i, (values, feasible_, *state) in enumerate(trials):
        state = state[0] if state else TrialState.COMPLETE
        s.add_trial(create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None,
            params={"x": 0.5}, distributions=dist,
            user_attrs={"model": f"m{i}", "constraint": -1.0 if feasible_ else 1.0}))
    return s


def test_one_objective_gives_the_best_feasible_trial():
    s = _study(["minimize"], [([1.0], True), ([0.5], False), ([0.8], True), ([2.0], True)])
    assert [t.number for t in fin.choose(s, 5)] == [2]  # 0.5 broke the constraint
    s = _study(["minimize"], [([1.0], False)])
    assert fin.choose(s, 5) == []


def test_several_objectives_give_the_feasible_pareto_front_at_most_k():
    pts = [([1, 9], True), ([2, 5], True), ([3, 4], True), ([4, 1], True), ([3, 6], True),
           ([0.5, 0.5], False), ([5, 0.9], True)]
    s = _study(["minimize", "minimize"], [(v, f, TrialState.COMPLETE) for v, f in pts])
    assert [t.number for t in fin.choose(s, 10)] == [0, 1, 2, 3, 6]  # 4 dominated, 5 infeasible
    picked = [t.number for t in fin.choose(s, 3)]
    assert picked == [0, 2, 6]  # spread along the first objective


def test_a_chain_drawn_again_pools_its_processes_and_its_latest_trial_is_the_finalist():
    s = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for model, own, pooled in [("a", 1.0, 1.0), ("b", 1.5, 1.5), ("a", 3.0, 2.0)]:
        s.add_trial(create_trial(values=[pooled], params={"x": 0.5}, distributions=dist,
                                 user_attrs={"model": model, "constraint": -1.0,
                                             "latency_ms_process": own}))
    assert study.latency_processes(s) == {"a": [1.0, 3.0], "b": [1.5]}
    # "a" was lucky once (1.0); over its two processes it is slower than "b"
    (best,) = fin.choose(s, 5)
    assert best.number == 1


def test_failed_trials_are_kept_but_never_chosen():
    s = _study(["minimize"], [([1.0], True, TrialState.COMPLETE), (None, True, TrialState.FAIL)])
    assert len(s.trials) == 2 and [t.number for t in fin.choose(s, 5)] == [0]


# --------------------------------------------------------------------------- sealing

def test_sealed_labels_refuse_every_read(tiny_data):
    sealed = seal(tiny_data)
    labels = sealed.test.labels
    assert isinstance(labels, SealedLabels) and len(labels) == len(tiny_data.test.labels)
    assert sealed.test.images is tiny_data.test.images and sealed.val is tiny_data.val
    before = SealedLabels.reads
    for read in (np.asarray, lambda x: x[0], lambda x: x.shape, list,
                 lambda x: np.mean(x)):
        with pytest.raises(SealedSplitError):
            read(labels)
    assert SealedLabels.reads == before + 5
    SealedLabels.reads = before


# ------------------------------------------------------------------ real searches (slow)

QUICK = ["search", "--quick", "--backends", "onnxruntime", "--margin", "0.5",
         "--space", "kd:temperature=2|8+prune.structured:ratio=0.3..0.7/0.1,"
                    "prune.structured:ratio=0.3..0.7/0.1+quant.static:calibration_size=16|32"]


@pytest.mark.slow
def test_a_search_reads_no_test_label_before_its_finalists_are_chosen(tmp_path, monkeypatch):
    """In process: the finalists' run is replaced by a probe that records the sealed
    labels' read count when it is called; every trial completed, none touched them."""
    from bench.cli import _parser
    from bench.search import cli

    seen = {}

    def probe(cfg, root, models, reference, backend, executor=None):
        seen.update(reads=SealedLabels.reads, models=models)
        return 0, None

    monkeypatch.setattr(fin, "measure", probe)
    SealedLabels.reads = 0
    args = _parser().parse_args([*QUICK, "--trials", "3", "--out", str(tmp_path / "s")])
    assert cli.run_search(args) == 0
    assert seen["reads"] == 0 and seen["models"]
    s = optuna.load_study(study_name=study.STUDY_NAME,
                          storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 3
    assert all(0 <= t.user_attrs["val_auc"] <= 1 for t in s.trials)
    assert (tmp_path / "s" / "search.html").read_text().count("<img") >= 1


@pytest.mark.slow
def test_a_killed_search_resumes_without_losing_a_finished_trial(tmp_path):
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "bench", *QUICK, "--trials", "5", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    lines = []
    for line in proc.stdout:  # kill while trial 2 runs (after trial 1 is stored)
        lines.append(line)
        if re.search(r"\] trial 1: ", line):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    time.sleep(1)
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    storage = f"sqlite:///{out / 'study.db'}"
    before = optuna.load_study(study_name=study.STUDY_NAME, storage=storage).trials
    kept = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    assert len(kept) >= 2
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    after = optuna.load_study(study_name=study.STUDY_NAME, storage=storage).trials
    assert {t.number: t.values for t in after if t.number in kept} == kept
    assert sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in after) == 5
    stale = [t for t in after if t.user_attrs.get("error") == study.INTERRUPTED]
    assert all(t.state == TrialState.FAIL for t in stale)
    # the resumed attempt ran only the missing trials, and reused the steps trained before
    ran = re.findall(r"\] trial (\d+): ", again.stderr + again.stdout)
    assert ran and min(map(int, ran)) > max(kept)
    assert (out / "finalists" / "results.csv").exists() and (out / "trials.csv").exists()
    assert len((out / "trials.csv").read_text().splitlines()) == len(after) + 1
    with pytest.raises(subprocess.CalledProcessError):  # finished: not resumed again
        subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, check=True,
                       timeout=120)


def test_search_options_are_checked_before_any_training(capsys):
    from bench.cli import main

    for argv, message in [(["search", "--trials", "3", "--methods", "kd"], "takes --space"),
                          (["search", "--quick"], "give a budget"),
                          (["search", "--trials", "0"], "--trials 0"),
                          (["search", "--trials", "2", "--resume"], "--resume"),
                          (["search", "--trials", "2", "--seeds", "0,1"], "one seed")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert SearchOptions(space="kd").minimize == "latency"
