"""Where a run's work goes. `local` (the default) trains and measures in this process and
its measuring processes, exactly as always, and never imports Ray; `ray` sends the
teachers, the method chains and the measurements to a Ray cluster (bench.cluster).

An executor offers what the runner needs from it: `teacher`, `build_all`, `station` (where
the measuring processes run: bench.measuring.station), `prefetch` (start the teachers of
several seeds at once where that can run in parallel), `describe` (for the manifest) and
`close`.
"""

from __future__ import annotations


class LocalExecutor:
    """Everything on this machine, in order."""

    name = "local"

    def teacher(self, cfg, data):
        from bench.teacher import for_config

        return for_config(cfg, data)

    def build_all(self, cfg, data, teacher, run=None):
        from bench import artifacts

        return artifacts.build_all(cfg, data, teacher, run)

    def station(self, cfg):
        from bench.measuring.station import LocalStation

        return LocalStation(cfg.measurement.threads)

    def prefetch(self, runs) -> None:
        """Nothing to start ahead here: a seed's teacher trains when its run reaches it."""

    def describe(self) -> dict:
        return {"executor": "local"}

    def close(self) -> None:
        pass


def for_config(cfg):
    """The executor `cfg.execution` names, connected (a Ray cluster is joined here)."""
    if cfg.execution.executor == "ray":
        from bench.cluster import RayExecutor

        return RayExecutor.connect(cfg)
    return LocalExecutor()
