"""Every model deployed to every backend, in the bench process, before anything is timed:
one Target per row to measure, or a finished row (n/a with the reason, or failed).

Sizes are taken from the files on disk (gzip on a thread pool meanwhile: zlib releases
the GIL), so every size is in before the first timed process starts.
"""

from __future__ import annotations

import contextlib
import gzip
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import methods
from bench import backends
from bench.artifacts import MIB, method_of
from bench.measuring import Target
from bench.progress import log
from bench.result import STATUS_FAILED, STATUS_NA, Result


def export_all(engines, cfg, artifacts: dict, statics: dict, store, env) -> dict[str, list]:
    """backend -> its rows in model order: Target, or a finished Result."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = {e.name: _export_backend(e, cfg, artifacts, statics, store, env, pool)
                   for e in engines}
        return {name: [row if isinstance(row, Result) else _with_sizes(*row)
                       for row in rows] for name, rows in pending.items()}


def _with_sizes(target: Target, sizes) -> Target:
    file_mib, gz_mib = sizes.result()
    return Target(target.base.with_(file_mib=file_mib, file_gz_mib=gz_mib), target.files,
                  target.options, target.variant)


def _export_backend(engine, cfg, artifacts, statics, store, env, pool) -> list:
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
            out.append(row.with_(status=STATUS_FAILED, error=one_line(art)))
            continue
        row = row.with_(notes="; ".join(art.notes), **statics[model])
        variants = [""] + (list(m.precisions) if not art.realisations else [])
        for variant in variants:
            out.append(_export_one(engine, art, row, variant, store, env, pool))
    return out


def _export_one(engine, art: methods.Artifact, row: Result, variant: str, store, env, pool):
    model, name = row.model, engine.name
    if variant:
        row = row.with_(precision=variant)
    try:
        deployed = backends.deploy(engine, art, store.artifact_dir(model, name, variant), env,
                                   variant or "fp32")
    except backends.NotApplicable as exc:
        with contextlib.suppress(OSError):  # nothing deployed: no empty folder left behind
            store.artifact_dir(model, name, variant).rmdir()
        return row.with_(status=STATUS_NA, error=str(exc))
    except Exception as exc:  # noqa: BLE001
        return row.with_(status=STATUS_FAILED, error=f"export: {one_line(exc)}")
    row = row.with_(precision=deployed.precision, notes="; ".join([*art.notes, *deployed.notes]))
    target = Target(row, tuple(str(f) for f in deployed.files),
                    tuple((str(k), str(v)) for k, v in deployed.options.items()), variant)
    return target, pool.submit(file_sizes, deployed.files)


def file_sizes(files) -> tuple[float, float]:
    total = gz = 0
    for f in files:
        data = Path(f).read_bytes()
        total += len(data)
        gz += len(gzip.compress(data, compresslevel=6))
    return total / MIB, gz / MIB


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:300] if text else ''}"
