"""From the teacher to every model the run measures: the baselines and the --methods
chains, each step applied once (a shared prefix of two chains is made once), a failure
kept as the exception its rows will report."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import methods
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
        val_images=data.val.images, val_labels=data.val.labels,
    )


def build_all(cfg, data, teacher, run=None) -> dict[str, methods.Artifact | Exception]:
    """model name -> Artifact (or the exception that stopped it): the teacher, the
    baselines (methods declared `baseline`), then every chain of --methods.

    `run` (bench.pipeline.resume.RunDirectory): float steps are saved there as they are made, and
    a step saved by an earlier, killed attempt at this run is loaded instead of rebuilt."""
    builder = Builder(cfg, data, teacher, run)
    chains = chains_of(cfg)
    out: dict[str, methods.Artifact | Exception] = {"teacher": builder.teacher}
    for chain in chains:
        out[methods.chain_name(chain)] = builder.chain(chain)
    return out


class Builder:
    """Chains from one teacher, each prefix made once (in memory, and in `run` where one
    is given): what `build_all` and a search's trials share."""

    def __init__(self, cfg, data, teacher, run=None):
        self.ctx = context(cfg, data, teacher)
        self.run = run
        # a teacher trained by a killed attempt comes from the cache in the next one: the
        # same weights, so the same key (its saved steps are reused)
        source = "cache" if teacher.source == "trained" else teacher.source
        self.base_key = {"teacher": {"source": source, **teacher.info},
                         "data": data.fingerprint, "seed": cfg.seed,
                         "training": cfg.to_dict()["training"]}
        self.teacher = methods.Artifact(name="teacher", arch=teacher.arch, module=teacher.module,
                                        float_module=teacher.module,
                                        notes=(f"teacher ({teacher.source})",))
        self.memo: dict[tuple, methods.Artifact | Exception] = {(): self.teacher}

    def chain(self, chain: tuple) -> methods.Artifact | Exception:
        for i in range(1, len(chain) + 1):
            prefix = chain[:i]
            if prefix not in self.memo:
                self.memo[prefix] = make_step(self.memo[chain[:i - 1]], prefix, self.ctx, self.run,
                                          self.base_key)
        return self.memo[chain]


def make_step(parent, prefix: tuple, ctx, run, base_key: dict) -> methods.Artifact | Exception:
    """The step's artifact: loaded from `run` where an earlier attempt saved it, else
    applied (and saved, where it is one float model)."""
    if isinstance(parent, Exception) or run is None:
        return apply_one(parent, prefix, ctx)
    saved = load_saved(run, prefix, ctx, base_key)
    if saved is not None:
        return saved
    made = apply_one(parent, prefix, ctx)
    save_made(run, prefix, base_key, made)
    return made


def step_key(base_key: dict, prefix: tuple) -> str:
    from bench import cache

    return cache.key({**base_key, "chain": [(s.method, list(s.params)) for s in prefix]})


def load_saved(run, prefix: tuple, ctx, base_key: dict) -> methods.Artifact | None:
    """The chain `prefix` as an earlier, killed attempt at this run saved it, or None. Its
    steps are the prefix itself: every chain starts at the teacher, which has none."""
    name = methods.chain_name(prefix)
    saved = run.load_step(name, step_key(base_key, prefix))
    if saved is None:
        return None
    from bench.pipeline.resume import restore

    meta, state = saved
    log(f"{name}: reusing the model an earlier attempt at this run built")
    module = restore(meta["arch"], ctx.task.num_outputs, state)
    return methods.Artifact(name=name, arch=meta["arch"], module=module, float_module=module,
                            steps=tuple(prefix), precision=meta["precision"],
                            notes=tuple(meta["notes"]), seconds=meta["seconds"],
                            train_steps=meta.get("train_steps", 0))


def save_made(run, prefix: tuple, base_key: dict, made) -> None:
    """Save a made step in `run` where it is one float model (int8 is realised per backend
    from its float parent, which is saved)."""
    if isinstance(made, methods.Artifact) and not made.realisations:
        run.save_step(methods.chain_name(prefix), step_key(base_key, prefix),
                      made.module.state_dict(),
                      {"arch": made.arch, "precision": made.precision, "notes": list(made.notes),
                       "seconds": made.seconds, "train_steps": made.train_steps})


def chains_of(cfg) -> list[tuple]:
    """The baselines, then every chain of --methods: the chains a run builds."""
    chains = methods.baselines()
    return chains + [c for c in methods.expand(cfg.methods.spec) if c not in chains]


def apply_one(parent, prefix: tuple, ctx) -> methods.Artifact | Exception:
    if isinstance(parent, Exception):
        return parent
    step, name = prefix[-1], methods.chain_name(prefix)
    cls = methods.get(step.method)
    log(f"{name}: " + (f"training {ctx.student_arch} without distillation (the baseline)"
                       if cls.baseline else f"applying {step.method} to {parent.name}"))
    from bench.modelling.training import steps_taken

    try:
        before = steps_taken()
        made = cls().apply(parent, ctx, **dict(step.params))
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
    from bench.measuring import PARITY_BATCH
    from bench.modelling.training import predict_logits

    return predict_logits(artifact.float_module, test_images[:PARITY_BATCH]).numpy()
