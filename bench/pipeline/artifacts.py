"""From the teacher to every model the run measures: the baselines and the --methods
chains, each step applied once (a shared prefix of two chains is made once), a failure
kept as the exception its rows will report."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import methods
from bench.measuring import PARITY_BATCH
from bench.progress import log

MIB = 1024 * 1024


def context(cfg, data, teacher) -> methods.Context:
    t = cfg.training
    return methods.Context(
        task=data.task, train_images=data.train.images, train_labels=data.train.labels,
        calibration_images=data.calibration, teacher=teacher.module,
        teacher_logits=teacher.train_logits, teacher_member_logits=teacher.member_logits,
        student_arch=t.student, image_size=cfg.data.image_size,
        student_epochs=t.student_epochs, finetune_epochs=t.finetune_epochs, seed=cfg.seed,
        transfer_images=data.transfer, transfer_logits=teacher.transfer_logits,
        transfer_member_logits=teacher.member_transfer_logits,
        val_images=data.val.images, val_labels=data.val.labels, augment=data.augment,
    )


def build_all(cfg, data, teacher, saved=None) -> dict[str, methods.Artifact | Exception]:
    """model name -> Artifact (or the exception that stopped it): the teacher, the
    baselines (methods declared `baseline`), then every chain of --methods.

    `saved`: the steps already made (bench.pipeline.saved_stages.SavedSteps for a run directory,
    which also saves each new one); see Builder."""
    builder = Builder(cfg, data, teacher, saved)
    out: dict[str, methods.Artifact | Exception] = {"teacher": builder.teacher}
    for chain in chains_of(cfg):
        out[methods.chain_name(chain)] = builder.chain(chain)
    return out


def base_key(cfg, data, teacher) -> dict:
    """What every step of a run is made from (its data, teacher, seed and training
    settings): with the chain, the key of a saved step."""
    # a teacher trained by a killed attempt comes from the cache in the next one: the
    # same weights, so the same key (its saved steps are reused)
    source = "cache" if teacher.source == "trained" else teacher.source
    return {"teacher": {"source": source, **teacher.info}, "data": data.fingerprint,
            "seed": cfg.seed, "training": cfg.to_dict()["training"]}


class Builder:
    """Chains from one teacher, each prefix made once: what `build_all`, the Ray executor
    and a search's trials share.

    `made` maps a chain prefix to its model; a step is applied only where `made` lacks
    it. A plain dict by default; for a run directory, bench.pipeline.saved_stages.SavedSteps,
    which finds the steps an earlier, killed attempt saved and saves each new one."""

    def __init__(self, cfg, data, teacher, saved=None):
        self.ctx = context(cfg, data, teacher)
        self.teacher = teacher_artifact(teacher)
        self.made = {} if saved is None else saved

    def chain(self, prefix: tuple) -> methods.Artifact | Exception:
        """The model of `prefix` (the teacher for the empty chain), made where needed."""
        if not prefix:
            return self.teacher
        if prefix not in self.made:
            self.made[prefix] = apply_one(self.chain(prefix[:-1]), prefix, self.ctx)
        return self.made[prefix]


def teacher_artifact(teacher) -> methods.Artifact:
    """The teacher as the parent of every chain's first step."""
    return methods.Artifact(name="teacher", arch=teacher.arch, module=teacher.module,
                            float_module=teacher.module, notes=(f"teacher ({teacher.source})",))


def as_the_teacher(parent: methods.Artifact, ctx) -> methods.Artifact:
    """`parent`, and where it is the teacher's artifact, holding the context's very teacher
    module. A Ray task receives the parent and the context as separate objects, each
    unpickled on its own: without this, a method's `parent.module is ctx.teacher` (read the
    cached soft targets, or an ensemble's averaged ones) is False on a cluster and True in
    one process, and a cluster run distilled from different targets than a local one."""
    if parent.steps or parent.name != "teacher" or parent.module is ctx.teacher:
        return parent
    return replace(parent, module=ctx.teacher, float_module=ctx.teacher)


def chains_of(cfg) -> list[tuple]:
    """The baselines, then every chain of --methods: the chains a run builds."""
    chains = methods.baselines()
    return chains + [c for c in methods.expand(cfg.methods.spec) if c not in chains]


def apply_one(parent, prefix: tuple, ctx) -> methods.Artifact | Exception:
    if isinstance(parent, Exception):
        return parent
    parent = as_the_teacher(parent, ctx)
    step, name = prefix[-1], methods.chain_name(prefix)
    cls = methods.get(step.method)
    log(f"{name}: " + (f"training {ctx.student_arch} without distillation (the baseline)"
                       if cls.baseline else f"applying {step.method} to {parent.name}"))
    from bench.modelling.training import steps_taken

    try:
        before = steps_taken()
        made = cls().apply(parent, replace(ctx, chain=name), **dict(step.params))
        own = steps_taken() - before  # what this step trained (a baseline has no parent)
        return replace(made, name=name, steps=parent.steps + (step,),
                       train_steps=own + (0 if cls.baseline else parent.train_steps))
    except Exception as exc:  # noqa: BLE001 - recorded in the rows
        log(f"{name}: FAILED: {exc}")
        return exc


def method_of(model: str, art) -> str:
    """The row's `method` column: 'baseline' for the teacher and baselines."""
    if model == "teacher":
        return "baseline"
    if isinstance(art, methods.Artifact):
        return "baseline" if methods.get(art.method).baseline else art.method
    return model.split("+")[-1].split(":")[0]


def static_figures(artifact: methods.Artifact, image_size: int) -> dict:
    """Backend-independent row figures."""
    from bench.modelling.architectures import count_buffers, count_macs, count_params, state_bytes

    # Counts come from the float model: an int8 row has its float parent's parameters.
    params, nonzero = count_params(artifact.float_module)
    try:
        macs = count_macs(artifact.float_module, image_size)
    except Exception:  # noqa: BLE001 - an uncountable graph leaves the cell empty
        macs = None
    cost = ({} if not artifact.steps else  # the teacher's own cost is the manifest's
            {"compress_seconds": round(artifact.seconds, 1), "compress_steps": artifact.train_steps})
    return {"params": params, "params_nonzero": nonzero,
            "buffers": count_buffers(artifact.float_module),
            "weights_mib": state_bytes(artifact.module) / MIB, "macs": macs, **cost}


def reference_logits(artifact: methods.Artifact, test_images: np.ndarray) -> np.ndarray:
    """PyTorch fp32 logits of the model on the parity batch: what every backend is checked against."""
    from bench.modelling.training import predict_logits

    return predict_logits(artifact.float_module, test_images[:PARITY_BATCH]).numpy()
