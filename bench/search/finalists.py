"""After the search: the finalists chosen on validation, then measured once on test.

Finalists are the feasible trials (non-inferior on validation) that are best: the best
one for a single objective, the Pareto front for several (at most `--finalists`, spread
along the first objective). They are measured by an ordinary `bench run` of their exact
chains, with the reference chain beside them (default the default run's
`kd+prune.structured+quant.static`), into SEARCH/finalists: the full timing plan, every
configured backend, the test split read for the first time. The trials' saved steps are
handed to that run, so it trains nothing the search trained already.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.progress import log

REFERENCE = "kd+prune.structured+quant.static"


def feasible(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("constraint", np.inf) <= 0]


def choose(study, limit: int) -> list:
    """The finalist trials, best first, one per distinct model: its latest trial, whose
    latency pools every process of the model (bench.search.trials), not its luckiest."""
    latest = {}
    for t in feasible(study):
        latest[t.user_attrs["model"]] = t  # trials come in order of their number
    trials = sorted(latest.values(), key=lambda t: tuple(t.values))
    if len(study.directions) == 1:
        return trials[:1]
    front = [t for t in trials if not any(_dominates(o.values, t.values) for o in trials)]
    if len(front) <= limit:
        return front
    picks = np.unique(np.round(np.linspace(0, len(front) - 1, limit)).astype(int))
    return [front[i] for i in picks]


def _dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True))


def measure(cfg, root: Path, models: list[str], reference: str | None, backend: str,
            executor=None) -> tuple[int, Path]:
    """`bench run` of the finalists' chains (and the reference) into ROOT/finalists; a
    killed search continues it like any run. Returns (exit status, run directory)."""
    from bench.pipeline.runner import run_one

    out = root / "finalists"
    spec = ",".join(models + ([reference] if reference and reference not in models else []))
    backends = list(cfg.measurement.backends)
    if backend not in backends:
        backends.append(backend)
    run_cfg = replace(cfg, methods=replace(cfg.methods, spec=spec),
                      measurement=replace(cfg.measurement, backends=backends),
                      output=replace(cfg.output, out=str(out)))
    if not (out / "manifest.json").exists():  # hand over the steps the trials saved
        steps = root / ".resume" / "steps"
        if steps.is_dir():
            shutil.copytree(steps, out / ".resume" / "steps", dirs_exist_ok=True)
    log(f"finalists: measuring {len(models)} chosen on validation"
        + (f" and the reference {reference}" if reference else "")
        + f" on the test split, as `bench run` does ({', '.join(backends)})")
    return run_one(run_cfg, executor), out
