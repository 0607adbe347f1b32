"""Where a run's work goes: the executor `--executor` names, connected.

`local` (the default) trains and measures in this process and its measuring processes and
never imports Ray (bench.pipeline.executors); `ray` joins a Ray cluster and sends the
teachers, the method chains and the measurements there (bench.cluster). The choice is
made here, above both, so the pipeline never imports the cluster package.
"""

from __future__ import annotations

from bench.cluster import RayExecutor  # imports Ray only when it connects: Ray is optional
from bench.pipeline.executors import LocalExecutor


def connect(cfg):
    """The executor `cfg.execution` names (a Ray cluster is joined here: with the cluster's
    defaults, such as --train-threads, settled in `cfg`)."""
    if cfg.execution.executor == "ray":
        return RayExecutor.connect(cfg)
    return LocalExecutor()
