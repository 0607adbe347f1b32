"""`bench search`: the fastest (or smallest) candidate that stays non-inferior, found by
Optuna on the validation split and tested once on the test split.

    search directory
      search.json         options, configuration, state, finalists, wall time
      study.db            the Optuna study (SQLite): every trial, failed ones included
      teacher/, trials/   validation figures of the teacher and each trial on the backend
      .resume/steps/      every trained step (a resumed search and the finalists reuse them;
                          removed once the search has finished)
      finalists/          an ordinary run directory: the finalists and the reference on test
      trials.csv, search.html

Order: options and configuration checked (one-line errors, before any training), data,
teacher, the test labels sealed (bench.search.sealed), trials (bench.search.study), the
finalists chosen from validation figures alone, then measured by `bench run`
(bench.search.finalists), then the report (bench.search.report).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from itertools import product
from pathlib import Path

import methods
from bench import backends, cache, execution
from bench.backends import telemetry
from bench.cache import atomic_write_bytes
from bench.pipeline import artifacts
from bench.pipeline.resume import differences
from bench.pipeline.saved_stages import saved_steps
from bench.progress import log
from bench.results.saved import SavedOutputs
from bench.search import finalists, report, space, study
from bench.search.ray_tune import search_trials
from bench.search.sealed import seal
from bench.search.trials import SEARCH_LATENCY, Evaluator


@dataclass(frozen=True)
class SearchOptions:
    space: str
    minimize: str = "latency"
    trials: int | None = None
    time_s: float | None = None
    finalists: int = 5
    reference: str | None = "kd+prune.structured+quant.static"
    resume: bool = False


def parse_duration(text: str) -> float:
    """`600`, `600s`, `10m`, `1.5h` as seconds; a one-line ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not match or float(match[1]) <= 0:
        raise ValueError(f"--time {text!r}: write seconds or a duration like 90s, 10m, 1.5h "
                         "(above 0)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def check(cfg, opts: SearchOptions):
    """Every bad option as a one-line ValueError; returns (templates, objectives)."""
    from bench.config import settings

    settings.validate(cfg)
    if cfg.seeds:
        raise ValueError("--seeds: a search runs one seed (give --seed)")
    templates = space.parse(opts.space)
    default = "onnxruntime" if "onnxruntime" in backends.installed() else cfg.measurement.backends[0]
    objectives = study.parse_objectives(opts.minimize, default)
    backends.get(objectives.backend)  # installed, or a one-line error
    if opts.trials is None and opts.time_s is None:
        raise ValueError("give a budget: --trials N and/or --time 10m")
    if opts.trials is not None and opts.trials < 1:
        raise ValueError(f"--trials {opts.trials}: must be 1 or more")
    if opts.finalists < 1:
        raise ValueError(f"--finalists {opts.finalists}: must be 1 or more")
    if opts.reference:
        methods.expand(opts.reference)
    if cfg.execution.executor == "ray" and not cfg.execution.measure_on:
        raise ValueError("bench search --executor ray needs --measure-on RESOURCE: trials train "
                         "while others are measured, so measurements need nodes of their own")
    return templates, objectives


def student_budget(cfg, templates, reference: str | None):
    """`cfg` with the teacher's floor (training.student_epochs_max) the most epochs a
    trial or the reference chain may train the student architecture for (each choice, a
    range's top; --methods plays no part in a search): the search's teacher and its
    finalists' run's, which keeps this configuration, are then the same."""
    run = cfg.training.student_epochs
    most = methods.student_budget(methods.expand(reference) if reference else [], run)
    for step in (step for template in templates for step in template.steps):
        cls = methods.get(step.method)
        given = {p.name: p.default for p in cls.params} | dict(step.fixed)
        options = [[(name, v) for v in (dim.values if isinstance(dim, space.Choice)
                                        else (dim.low, dim.high))]
                   for name, dim in step.searched]
        for drawn in product(*options):
            most = max(most, cls.student_epochs(given | dict(drawn), run) or 0.0)
    return replace(cfg, training=replace(cfg.training,
                                         student_epochs_max=most if most > run else 0.0))


def search(cfg, opts: SearchOptions, root: Path | None = None) -> int:
    templates, objectives = check(cfg, opts)
    cfg = student_budget(cfg, templates, opts.reference)
    root = Path(root or cfg.output.out or Path("reports") / "searches"
                / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    executor = execution.connect(cfg)  # first: a cluster may settle --train-threads
    try:
        state = _open(root, cfg, opts)
        return _search(cfg, opts, root, state, templates, objectives, executor)
    finally:
        executor.close()


def _search(cfg, opts: SearchOptions, root: Path, state: dict, templates, objectives,
            executor) -> int:
    import torch

    from bench.config.settings import QUICK_LATENCY
    from bench.data import load_dataset
    from bench.modelling.training import use_device, use_precision

    telemetry.switch_off()
    t_start = time.perf_counter()
    use_device(cfg.device)
    use_precision(cfg.training.precision)
    torch.set_num_threads(cfg.training.train_threads)
    torch.manual_seed(cfg.seed)
    log(f"search directory: {root}" + (" (resumed)" if state.get("resumed") else ""))
    if state.get("finalists") is None:
        data = seal(load_dataset(cfg.data, cfg.seed))
        teacher = executor.teacher(cfg, data)
        builder = artifacts.Builder(cfg, data, teacher,
                                    saved_steps(SavedOutputs(root), cfg, data, teacher))
        plan = QUICK_LATENCY if cfg.profile and "quick" in cfg.profile else SEARCH_LATENCY
        s = study.open_study(root / "study.db", objectives, cfg.seed, opts.trials)
        stale = study.close_interrupted(s, root / "study.db")
        if stale:
            log(f"search: {stale} trial{'s' if stale > 1 else ''} the stopped attempt left "
                f"unfinished recorded as failed; {study.finished(s)} finished trials kept")
        if executor.name == "ray":
            search_trials(s, cfg, data, builder, objectives, templates, opts, root, plan)
        else:
            _local_trials(s, cfg, data, builder, objectives, templates, opts, root, plan)
        chosen = finalists.choose(s, opts.finalists)
        state = _update(root, finalists=[t.number for t in chosen],
                        finalist_models=[t.user_attrs["model"] for t in chosen],
                        search_seconds=round(time.perf_counter() - t_start, 1))
        del data, builder, teacher  # the test split is read by the finalists' run alone
    else:
        s = study.open_study(root / "study.db", objectives, cfg.seed, opts.trials)
    code = 0
    if not state["finalists"]:
        log("search: no trial was non-inferior to the teacher on validation; nothing to test "
            "(see trials.csv for each trial's validation interval)")
        code = 1
    run_dir = None
    if state["finalists"] or opts.reference:
        code_run, run_dir = finalists.measure(cfg, root, state["finalist_models"],
                                              opts.reference, objectives.backend, executor)
        code = max(code, code_run)
    cache.atomic_write_bytes(root / "trials.csv", report.trials_csv(s).encode())
    path = report.write(root, s, objectives, state, run_dir, cfg.measurement.margin)
    _update(root, wall_seconds=round(time.perf_counter() - t_start, 1))  # this attempt
    shutil.rmtree(root / ".resume", ignore_errors=True)  # finished: nothing to resume
    log(f"search done: {path}")
    print(report.console(root, s, objectives, state, run_dir))
    return code


def _local_trials(s, cfg, data, builder, objectives, templates, opts, root: Path, plan) -> None:
    """The trials in this process: one Evaluator (the backend's fork server, the teacher's
    validation figures), Optuna's own loop."""
    evaluator = Evaluator(cfg, data, builder, objectives.backend, root, plan)
    evaluator.processes = study.latency_processes(s)
    try:
        evaluator.start()
        log(f"search: minimising {', '.join(map(objectives.label, objectives.names))} over "
            f"{len(templates)} chain templates, non-inferior to the teacher on validation "
            f"(margin {cfg.measurement.margin}); budget "
            + " and ".join(filter(None, [opts.trials and f"{opts.trials} trials",
                                         opts.time_s and f"{opts.time_s:.0f}s"])))
        study.optimize(s, evaluator, templates, objectives, cfg.measurement.margin,
                       opts.trials, opts.time_s)
    finally:
        evaluator.close()


def _open(root: Path, cfg, opts: SearchOptions) -> dict:
    """The search directory's state: a new one, or (with --resume) the stopped search of
    the same options and configuration. One-line ValueError otherwise."""
    path = root / "search.json"
    mine = {"options": {k: v for k, v in asdict(opts).items()
                        if k not in ("resume", "trials", "time_s")},
            "config": {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items()
                       if k != "output"}}
    if not path.exists():
        if opts.resume:
            raise ValueError(f"{root}: no search to resume (no search.json)")
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"{root}: not empty; choose another --out")
        root.mkdir(parents=True, exist_ok=True)
        _write(path, {**mine, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                      "finalists": None})
        return json.loads(path.read_text())
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not opts.resume:
        raise ValueError(f"{root}: holds a search; add --resume to continue it, or choose "
                         "another --out")
    if "wall_seconds" in state:
        raise ValueError(f"{root}: holds a finished search; choose another --out")
    diffs = differences({k: state.get(k) for k in mine}, mine)
    if diffs:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diffs[:3])
        raise ValueError(f"{root}: holds a search of other options: {shown}; give the same "
                         "options to resume it")
    return _update(root, resumed=[*state.get("resumed", []),
                                  datetime.now(UTC).isoformat(timespec="seconds")])


def _update(root: Path, **fields) -> dict:
    path = root / "search.json"
    state = {**json.loads(path.read_text()), **fields}
    _write(path, state)
    return state


def _write(path: Path, doc: dict) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
