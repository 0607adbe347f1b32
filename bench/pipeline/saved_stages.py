"""The method steps and the exports as mappings of what was already made, kept by the
run's one saving mechanism (bench.results.saved): what artifacts.Builder and
export.export_all are handed, so neither knows of saving or resuming.

`SavedSteps`: chain prefix -> model (a float model saved as its weights; int8 steps are
cheap and deterministic, and are realised per backend from their float parent, which is
saved). `SavedExports`: cell -> deployed files (they stay where the run keeps them).
"""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from dataclasses import replace

import methods
from bench import backends, cache
from bench.cache import atomic_write_bytes
from bench.pipeline.artifacts import base_key, context, teacher_artifact
from bench.progress import log
from bench.results.saved import SavedOutputs


class _Made(MutableMapping):
    """What a stage made, by key: held in memory (`made`), else found among the saved
    outputs by `_find`, which puts what it finds into `made`."""

    def __init__(self):
        self.made: dict = {}

    def _find(self, key):
        raise NotImplementedError

    def __contains__(self, key) -> bool:
        return key in self.made or self._find(key) is not None

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        return self.made[key]

    def __delitem__(self, key) -> None:
        del self.made[key]

    def __iter__(self):
        return iter(self.made)

    def __len__(self) -> int:
        return len(self.made)


class SavedSteps(_Made):
    """chain prefix -> the model its last step made (methods.Artifact, or the exception that
    stopped it), as bench.pipeline.artifacts.Builder asks for them: held in memory, and a
    float model also saved as its weights (int8 steps are cheap and deterministic, and are
    realised per backend from their float parent, which is saved).

    A saved model comes back as the model it was: its parent is found first (the
    `teacher` artifact for a chain's first step), then the step's method rebuilds its
    structure from that parent and loads the weights (methods.base.Method.restore), so a
    method that changed layers' shapes, kinds or names is reloaded as it made them."""

    STAGE = "steps"

    def __init__(self, outputs: SavedOutputs, base_key: dict, teacher: methods.Artifact,
                 ctx: methods.Context):
        super().__init__()
        self.outputs, self.base_key, self.teacher, self.ctx = outputs, base_key, teacher, ctx

    def key(self, prefix: tuple) -> str:
        return cache.key({**self.base_key, "chain": [(s.method, list(s.params)) for s in prefix]})

    def __setitem__(self, prefix: tuple, made) -> None:
        self.made[prefix] = made
        if not isinstance(made, methods.Artifact) or made.realisations:
            return
        import torch

        name = methods.chain_name(prefix)
        buf = io.BytesIO()
        torch.save(made.module.state_dict(), buf)
        weights = self.outputs.file_path(self.STAGE, name, ".pt")
        atomic_write_bytes(weights, buf.getvalue())
        self.outputs.keep(self.STAGE, name, self.key(prefix), [weights], arch=made.arch,
                          precision=made.precision, notes=list(made.notes),
                          seconds=made.seconds, train_steps=made.train_steps)

    def _find(self, prefix: tuple):
        name = methods.chain_name(prefix)
        record = self.outputs.find(self.STAGE, name, self.key(prefix))
        if record is None:
            return None
        parent = self.teacher if len(prefix) == 1 else self.get(prefix[:-1])
        if not isinstance(parent, methods.Artifact):
            return None
        import torch

        data = (self.outputs.root / record["files"][0]).read_bytes()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        step = prefix[-1]
        try:
            module = methods.get(step.method)().restore(parent, replace(self.ctx, chain=name),
                                                        state, **dict(step.params)).eval()
        except Exception as exc:  # noqa: BLE001 - a step that cannot be rebuilt is made again
            log(f"{name}: the model an earlier attempt built cannot be rebuilt "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); making it again")
            return None
        log(f"{name}: reusing the model an earlier attempt at this run built")
        self.made[prefix] = methods.Artifact(
            name=name, arch=record["arch"], module=module, float_module=module,
            steps=tuple(prefix), precision=record["precision"], notes=tuple(record["notes"]),
            seconds=record["seconds"], train_steps=record.get("train_steps", 0))
        return self.made[prefix]


class SavedExports(_Made):
    """cell ('model/backend[/variant]') -> backends.Deployed, as bench.pipeline.export asks
    for them: the deployed files stay where the run keeps them (RUN/artifacts/...); the
    record holds their sha256, precision, notes, runtime options and what the method's
    realisation cost there (seconds, train_steps: the row's cost adds them)."""

    STAGE = "exports"

    def __init__(self, outputs: SavedOutputs):
        super().__init__()
        self.outputs = outputs

    def _find(self, cell: str):
        record = self.outputs.find(self.STAGE, cell, cell)
        if record is None:
            return None
        root = self.outputs.root
        self.made[cell] = backends.Deployed([root / f for f in record["files"]],
                                            record["precision"], record["notes"],
                                            record["options"], record.get("seconds", 0.0),
                                            record.get("train_steps", 0))
        return self.made[cell]

    def __setitem__(self, cell: str, deployed: backends.Deployed) -> None:
        self.made[cell] = deployed
        self.outputs.keep(self.STAGE, cell, cell, deployed.files,
                          precision=deployed.precision, notes=list(deployed.notes),
                          options={str(k): str(v) for k, v in deployed.options.items()},
                          seconds=deployed.seconds, train_steps=deployed.train_steps)

    def manifest_records(self) -> dict[str, dict]:
        """Every recorded export as the manifest's `exports` keeps it (the run's record of
        what was deployed: files, sha256, precision, notes, options)."""
        return {cell: {k: v for k, v in record.items() if k not in ("name", "key")}
                for cell, record in self.outputs.records(self.STAGE).items()}



def saved_steps(outputs: SavedOutputs, cfg, data, teacher) -> SavedSteps:
    """The method steps saved in `outputs` (a run's, or a search's) for this teacher."""
    return SavedSteps(outputs, base_key(cfg, data, teacher), teacher_artifact(teacher),
                      context(cfg, data, teacher))
