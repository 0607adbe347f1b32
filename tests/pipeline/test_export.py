"""bench.pipeline.export: a row's cost from the teacher adds what its backend's
realisation of the method did when deployed."""

from types import SimpleNamespace

import methods
from bench import backends
from bench.pipeline.export import export_all


class _Store:
    def __init__(self, root):
        self.root = root

    def artifact_dir(self, model, backend, variant=""):
        return self.root / model / backend / variant


def test_a_rows_cost_adds_what_its_realisation_did_at_deploy_time(env, float_artifact, tmp_path):
    def trained_when_deployed(artifact, float_graph, env, out_dir):
        # as pt2e QAT: 5 optimiser steps, and 2 s of a training another backend made first
        return backends.Realised(float_graph, "int8", ("trained when deployed",),
                                 train_steps=5, reused_seconds=2.0)

    (chain,) = methods.expand("quant.static")
    art = methods.Artifact(name="quant.static", arch="tiny", module=float_artifact.module,
                           float_module=float_artifact.module, steps=chain, precision="int8",
                           realisations={"onnxruntime": trained_when_deployed},
                           seconds=1.0, train_steps=7)
    cfg = SimpleNamespace(measurement=SimpleNamespace(threads=1, precisions=()), seed=0)
    statics = {"teacher": {}, "quant.static": {"compress_seconds": 1.0, "compress_steps": 7}}
    rows = export_all([backends.get("onnxruntime")], cfg,
                      {"teacher": float_artifact, "quant.static": art}, statics,
                      _Store(tmp_path), env)["onnxruntime"]
    assert all(hasattr(target, "base") for target in rows), [getattr(r, "error", "") for r in rows]
    teacher, row = (target.base for target in rows)
    assert teacher.compress_seconds is None  # the teacher's own cost is the manifest's
    assert row.compress_steps == 7 + 5
    assert row.compress_seconds >= 1.0 + 2.0
