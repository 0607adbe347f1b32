"""The search itself: an Optuna study over the space, stored in the search directory.

Optuna samples (TPE for one objective, NSGA-II for several) and keeps every trial in
SQLite (`study.db`, Optuna's own RDB storage: `optuna-dashboard sqlite:///.../study.db`
opens it). Each trial's figures are validation figures (bench.search.trials); its
constraint is the non-inferiority of its validation AUC against the teacher's: the
lower end of the paired bootstrap interval of delta AUC must lie above -margin.
It is set with `Trial.set_constraint` (Optuna 5's constrained optimisation, which TPE
and NSGA-II read), so a trial that breaks it is kept (infeasible) and steers the sampler
away, and a failed trial is kept as FAIL with its error. Only Optuna's public API is used:
the storage is one the search opens itself (`storage`), never a study's private one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from bench.progress import log
from bench.search import space as search_space
from methods import chain_name

#: objective name -> (trial figure, unit, needs a backend)
OBJECTIVES = {"latency": ("latency_ms", "ms", True), "file_mib": ("file_mib", "MiB", True),
              "macs": ("macs", "MACs", False), "params": ("params", "parameters", False)}
STUDY_NAME = "medbench-search"
INTERRUPTED = "interrupted: the search was stopped during this trial"


@dataclass(frozen=True)
class Objectives:
    names: tuple[str, ...]
    backend: str

    @property
    def columns(self) -> list[str]:
        return [OBJECTIVES[n][0] for n in self.names]

    def label(self, name: str) -> str:
        column, unit, bound = OBJECTIVES[name]
        return f"{name} ({unit}{', ' + self.backend if bound else ''})"


def parse_objectives(text: str, default_backend: str) -> Objectives:
    """`latency`, `latency:onnxruntime,file_mib`, `macs` ...: one backend per search (the
    one trials are deployed on), named on any objective or the default."""
    names, named = [], set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, backend = part.partition(":")
        if name not in OBJECTIVES:
            raise ValueError(f"--minimize {part!r}: unknown objective; choose from "
                             f"{', '.join(OBJECTIVES)} (latency and file_mib take :BACKEND)")
        if backend and not OBJECTIVES[name][2]:
            raise ValueError(f"--minimize {part!r}: {name} is the same on every backend")
        if name in names:
            raise ValueError(f"--minimize {text!r}: {name} is named twice")
        names.append(name)
        if backend:
            named.add(backend)
    if not names:
        raise ValueError("--minimize is empty")
    if len(named) > 1:
        raise ValueError(f"--minimize {text!r}: one backend per search (got "
                         f"{', '.join(sorted(named))})")
    return Objectives(tuple(names), named.pop() if named else default_backend)


def constraint(figures: dict, margin: float) -> float:
    """Optuna's convention, feasible when <= 0: -margin minus the lower end of delta AUC's
    validation interval (no interval: infeasible, it cannot show non-inferiority)."""
    low = figures.get("val_delta_ci_low")
    if low is None or not math.isfinite(low):
        return math.inf
    return -margin - low


def storage(path):
    """The search's SQLite file as Optuna's public RDBStorage: the study, the errors of
    the trials a killed search left running, and Ray Tune's searcher all open it so."""
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def open_study(storage_path, objectives: Objectives, seed: int, budget: int | None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if len(objectives.names) == 1:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, (budget or 30) // 3)))
    else:  # a first generation sized to the budget: 50 would be random search here
        sampler = optuna.samplers.NSGAIISampler(
            seed=seed, population_size=min(50, max(4, (budget or 40) // 4)))
    return optuna.create_study(storage=storage(storage_path), study_name=STUDY_NAME,
                               sampler=sampler, load_if_exists=True,
                               directions=["minimize"] * len(objectives.names))


def close_interrupted(study, storage_path) -> int:
    """Trials a killed search left RUNNING become FAIL, saying so (none is lost: the
    finished ones are in the storage); returns how many. A trial of another process
    has no Trial object here, so its error is written through the storage's public API
    (optuna.storages.fail_stale_trials needs heartbeats, which Ray Tune's trials, asked
    and told without study.optimize, never send)."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not stale:
        return 0
    store = storage(storage_path)
    study_id = store.get_study_id_from_name(study.study_name)
    for t in stale:
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, t.number)
        store.set_trial_user_attr(trial_id, "error", INTERRUPTED)
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


def latency_processes(study) -> dict:
    """model -> the per-process latency medians its completed trials measured (a resumed
    search pools a chain drawn again with what the stopped attempt measured)."""
    from optuna.trial import TrialState

    pooled: dict = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "latency_ms_process" in t.user_attrs:
            pooled.setdefault(t.user_attrs["model"], []).append(t.user_attrs["latency_ms_process"])
    return pooled


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def optimize(study, evaluator, templates, objectives: Objectives, margin: float,
             trials: int | None, seconds: float | None) -> None:
    """Trials until `trials` are finished in the study (over every attempt) or `seconds`
    of this attempt have passed, whichever comes first."""
    start = time.perf_counter()
    left = None if trials is None else max(0, trials - finished(study))
    if left == 0:
        log(f"search: the study already holds {trials} finished trials")
        return

    def objective(trial):
        chain = search_space.suggest(trial, templates)
        name = chain_name(chain)
        trial.set_user_attr("model", name)
        try:
            figures = evaluator.evaluate(trial.number, chain)
        except Exception as exc:
            trial.set_user_attr("error", str(exc).splitlines()[0] if str(exc) else repr(exc))
            raise
        for key, value in figures.items():
            if key != "notes":
                trial.set_user_attr(key, value)
        trial.set_user_attr("notes", figures["notes"])
        bound = constraint(figures, margin)
        trial.set_user_attr("constraint", bound)
        trial.set_constraint("non_inferiority", bound)
        values = [figures[c] for c in objectives.columns]
        if any(v is None for v in values):
            raise ValueError(f"{name}: an objective could not be measured ({objectives.names})")
        return values

    def stored(study, t) -> None:
        log_trial(t, objectives, start)

    study.optimize(objective, n_trials=left, timeout=seconds, catch=(Exception,),
                   callbacks=[stored])


def log_trial(t, objectives: Objectives, start: float) -> None:
    """Logged once Optuna has stored the trial: a line here is a trial a kill keeps."""
    a = t.user_attrs
    head = f"trial {t.number}: {a.get('model', '?')}: "
    if t.values is None:
        log(head + f"FAILED: {a.get('error', t.state.name)}")
        return
    log(head + ", ".join(f"{n} {v:.4g}" for n, v in zip(objectives.names, t.values, strict=True))
        + f"; validation AUC {a['val_auc']:.3f}, delta {a['val_delta_auc']:+.3f} "
        f"[{a['val_delta_ci_low']:+.3f}, {a['val_delta_ci_high']:+.3f}]: "
        f"{a['val_verdict'] or 'no verdict'} ({time.perf_counter() - start:.0f}s into the "
        "search)"
        + (f" on {a['machine']}" if a.get("machine") else ""))
