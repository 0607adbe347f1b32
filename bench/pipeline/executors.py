"""The local executor: a run's work in this process and its measuring processes, as
always, Ray never imported. bench.execution picks it, or bench.cluster's RayExecutor for
`--executor ray`.

An executor offers what the runner needs from it: `teacher`, `build_all`, `station` (where
the measuring processes run: bench.measuring.station), `prefetch` (start the teachers of
several seeds at once where that can run in parallel), `describe` (for the manifest) and
`close`.
"""

from __future__ import annotations

from bench.measuring.station import LocalStation
from bench.pipeline import artifacts


class LocalExecutor:
    """Everything on this machine, in order."""

    name = "local"

    def teacher(self, cfg, data):
        from bench.modelling.teacher import for_config

        return for_config(cfg, data)

    def build_all(self, cfg, data, teacher, saved=None):
        return artifacts.build_all(cfg, data, teacher, saved)

    def station(self, cfg):
        return LocalStation(cfg.measurement.threads)

    def prefetch(self, runs) -> None:
        """Nothing to start ahead here: a seed's teacher trains when its run reaches it."""

    def describe(self) -> dict:
        return {"executor": "local"}

    def close(self) -> None:
        pass
