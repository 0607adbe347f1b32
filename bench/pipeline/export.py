"""Every model deployed to every backend, in the bench process, before anything is timed:
one Target per row to measure, or a finished row (n/a with the reason, or failed).

Sizes are taken from the files on disk (gzip on a thread pool meanwhile: zlib releases
the GIL), so every size is in before the first timed process starts. What a method's
realisation did on the backend (calibration, max_drop's search, pt2e QAT) is added to the
row's cost from the teacher.
"""

from __future__ import annotations

import gzip
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import methods
from bench import backends
from bench.inputs import first_line
from bench.measuring import Target
from bench.pipeline.artifacts import MIB, method_of
from bench.progress import log
from bench.results.row import STATUS_FAILED, STATUS_NA, Result


def export_all(engines, cfg, artifacts: dict, statics: dict, store, env,
               deployed=None) -> dict[str, list]:
    """backend -> its rows in model order: Target, or a finished Result.

    `deployed` maps a cell (`cell_name`) to its backends.Deployed; a cell is exported only
    where it lacks one, and each new export is added once its files are whole. A plain
    dict by default; for a run directory, bench.pipeline.saved_stages.SavedExports, which finds
    the cells an earlier, killed attempt exported and records each new one."""
    deployed = {} if deployed is None else deployed
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = {e.name: _export_backend(e, cfg, artifacts, statics, store, deployed, env, pool)
                   for e in engines}
        return {name: [row if isinstance(row, Result) else _with_sizes(*row)
                       for row in rows] for name, rows in pending.items()}


def _with_sizes(target: Target, sizes) -> Target:
    file_mib, gz_mib = sizes.result()
    return Target(target.base.with_(file_mib=file_mib, file_gz_mib=gz_mib), target.files,
                  target.options, target.variant)


def cell_name(model: str, backend: str, variant: str) -> str:
    """A (model, backend, variant) cell's name: 'model/backend[/variant]'."""
    return "/".join(filter(None, (model, backend, variant)))


def _export_backend(engine, cfg, artifacts, statics, store, deployed, env, pool) -> list:
    """A float model is deployed once in fp32 and once more per --precision variant."""
    m = cfg.measurement
    log(f"{engine.name}: exporting {len(artifacts)} models"
        + (f" (+ {', '.join(m.precisions)} variants)" if m.precisions else ""))
    out = []
    for model, art in artifacts.items():
        row = Result(model=model, method=method_of(model, art), backend=engine.name,
                     arch=getattr(art, "arch", ""), precision=getattr(art, "precision", ""),
                     threads=m.threads, seed=cfg.seed)
        if isinstance(art, Exception):
            out.append(row.with_(status=STATUS_FAILED, error=first_line(art)))
            continue
        row = row.with_(notes="; ".join(art.notes), **statics[model])
        variants = [""] + (list(m.precisions) if not art.realisations else [])
        for variant in variants:
            out.append(_export_one(engine, art, row, variant, store, deployed, env, pool))
    return out


def _export_one(engine, art: methods.Artifact, row: Result, variant: str, store, deployed,
                env, pool):
    model, name = row.model, engine.name
    if variant:
        row = row.with_(precision=variant)
    cell = cell_name(model, name, variant)
    try:
        if cell in deployed:  # exported before (by an earlier attempt at this run)
            made = deployed[cell]
        else:
            made = _deploy_atomically(engine, art, store.artifact_dir(model, name, variant),
                                      env, variant or "fp32")
            deployed[cell] = made
    except backends.NotApplicable as exc:  # nothing deployed, no folder left behind
        return row.with_(status=STATUS_NA, error=str(exc))
    except Exception as exc:  # noqa: BLE001
        return row.with_(status=STATUS_FAILED, error=f"export: {first_line(exc)}")
    row = row.with_(precision=made.precision, notes="; ".join([*art.notes, *made.notes]),
                    **deploy_cost(row, made))
    target = Target(row, tuple(str(f) for f in made.files),
                    tuple((str(k), str(v)) for k, v in made.options.items()), variant)
    return target, pool.submit(file_sizes, made.files)


def deploy_cost(row: Result, made) -> dict:
    """The row's cost columns with what deploying did for the method on this backend
    (backends.Deployed.seconds, train_steps) added; none for the teacher, whose cost is
    the manifest's."""
    if row.compress_seconds is None:
        return {}
    return {"compress_seconds": round(row.compress_seconds + made.seconds, 1),
            "compress_steps": (row.compress_steps or 0) + made.train_steps}


def _deploy_atomically(engine, art, final: Path, env, precision: str):
    """Deploy into a hidden sibling folder, then rename it into place: runtimes write their
    files in pieces, and a kill must leave either no folder or a whole one."""
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        deployed = backends.deploy(engine, art, partial, env, precision)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return replace(deployed, files=[final / Path(f).relative_to(partial) for f in deployed.files])


def file_sizes(files) -> tuple[float, float]:
    total = gz = 0
    for f in files:
        data = Path(f).read_bytes()
        total += len(data)
        gz += len(gzip.compress(data, compresslevel=6))
    return total / MIB, gz / MIB

