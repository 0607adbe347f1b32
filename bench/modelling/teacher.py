"""The shared teacher: trained once by the bench and cached, or the user's checkpoint.

The cache key hashes everything that determines the trained weights (architecture, data
fingerprint, recipe, seed, torch version), so changing any of them retrains, and the
same settings reuse it. The teacher's logits on the training split are cached beside
it: every distillation in the run reads them instead of re-running the teacher.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from bench import cache
from bench.data import DataBundle
from bench.modelling import precision
from bench.modelling.architectures import EnsembleTeacher, build, load_checkpoint
from bench.modelling.training import auc_of, predict_logits, steps_taken, train, trained_in
from bench.modelling.training_rule import TrainSettings, from_scratch_settings
from bench.progress import log

RECIPE_VERSION = 6  # bump when training code changes what a cached teacher would be
# 2: initial weights seeded right before the build (they depended on what ran earlier)
# 3: channels-last training; logits on the unlabelled transfer images cached too
# 4: the one training rule (AdamW, bench.modelling.training), never fewer steps than the students
# 5: the augmentation policy (settings.augment: bench.modelling.augment); the precision
#    it trained in (bench.modelling.precision: bf16 autocast where faster)
# 6: its soft targets computed under the same autocast (predict_logits' `fast`); batch
#    norm re-estimated on a seeded random draw of the training images, not the first ones


@dataclass
class Teacher:
    module: nn.Module
    train_logits: torch.Tensor
    arch: str
    source: str  # "trained", "cache", "checkpoint", or "ensemble"
    info: dict
    member_logits: tuple | None = None  # --teachers: each member's train logits
    transfer_logits: torch.Tensor | None = None  # on data.transfer, the unlabelled images
    member_transfer_logits: tuple | None = None


def teacher_plan(n_train: int, epochs: float, student_epochs: float | None) -> dict:
    """The teacher's budget under the training rule: `epochs` of the labelled images, but
    never fewer optimiser steps than the students' budget (`student_epochs`: the most any
    step of the run trains the student architecture, `student`, `kd` or a `kd:epochs=N`,
    methods.student_budget): a small dataset no longer gives the teacher less training
    than the models that learn from it."""
    per_epoch = TrainSettings(epochs=1).steps_per_epoch(n_train)
    own = max(1, int(round(epochs * per_epoch)))
    students = int(round((student_epochs or 0) * per_epoch))
    return {"steps": max(own, students), "own_steps": own, "student_steps": students}


def get_ensemble(archs: list[str], data: DataBundle, epochs: float, seed: int,
                 use_cache: bool = True, pretrained: bool = False,
                 student_epochs: float | None = None) -> Teacher:
    """--teachers a,b: each trained (or cached) on its own; the row measures their average."""
    members = [get_teacher(a, data, epochs, seed, None, use_cache, pretrained, student_epochs)
               for a in archs]
    module = EnsembleTeacher([m.module for m in members], data.task.kind == "multilabel").eval()
    logits = predict_logits(module, data.train.images, fast=True)
    return Teacher(module, logits, "+".join(archs), "ensemble",
                   {"members": [{"arch": m.arch, "source": m.source, **m.info} for m in members],
                    "combine": "mean of the members' probabilities; KD from their averaged soft targets"},
                   member_logits=tuple(m.train_logits for m in members),
                   transfer_logits=_transfer_logits(module, data),
                   member_transfer_logits=(tuple(m.transfer_logits for m in members)
                                           if data.transfer is not None else None))


def _read_cached(path, arch: str, data: DataBundle) -> tuple[nn.Module, dict]:
    """A cached teacher and its logits; raises on anything that does not fit this data,
    which `cache.read_or_rebuild` treats as a corrupt cache to retrain."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    module = build(arch, data.task.num_outputs)
    module.load_state_dict(blob["state_dict"])
    json.loads(blob["meta"])
    for name, images in (("train_logits", data.train.images), ("transfer_logits", data.transfer)):
        n = None if images is None else len(images)
        got = blob.get(name)
        if (n is None) != (got is None) or (got is not None and len(got) != n):
            raise ValueError(f"{name} for {None if got is None else len(got)} images, the data "
                             f"has {n}")
    return module, blob


def _transfer_logits(module: nn.Module, data: DataBundle) -> torch.Tensor | None:
    return None if data.transfer is None else predict_logits(module, data.transfer, fast=True)


def get_teacher(arch: str, data: DataBundle, epochs: float, seed: int,
                checkpoint: str | None = None, use_cache: bool = True,
                pretrained: bool = False, student_epochs: float | None = None) -> Teacher:
    if checkpoint:
        module = load_checkpoint(arch, data.task.num_outputs, checkpoint).eval()
        with open(checkpoint, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        log(f"teacher: loaded {arch} from {checkpoint} (sha256 {digest})")
        return Teacher(module, predict_logits(module, data.train.images, fast=True), arch,
                       "checkpoint",
                       {"checkpoint": str(checkpoint), "sha256": digest},
                       transfer_logits=_transfer_logits(module, data))
    plan = teacher_plan(len(data.train), epochs, student_epochs)
    torch.manual_seed(seed)  # the initial weights: not whatever ran before
    fresh = build(arch, data.task.num_outputs, pretrained)
    settings = from_scratch_settings(fresh, epochs, seed, steps=plan["steps"],
                                     augment=data.augment)
    info = {"arch": arch, "data": data.fingerprint, "settings": settings.__dict__, "plan": plan,
            "recipe": RECIPE_VERSION, "torch": torch.__version__.split("+")[0],
            "precision": precision.name(trained_in(fresh, settings))}
    if pretrained:
        info["pretrained"] = "imagenet"  # old cache keys stay valid without it
    if data.task.class_weight is not None:  # likewise
        info["class_weight"] = list(data.task.class_weight)
    # CPU training is reproducible for a given thread count, not across counts: a teacher
    # trained by the tests at 2 threads differed from the ci preset's at 1 thread.
    info["threads"] = torch.get_num_threads()
    k = cache.key(info)
    path = cache.cache_dir() / "teachers" / f"{arch}-{k}.pt"
    cached = cache.read_or_rebuild(path, lambda p: _read_cached(p, arch, data), "teacher") \
        if use_cache else None
    if cached is not None:
        module, blob = cached
        log(f"teacher: reusing cached {arch} ({path})")
        return Teacher(module.eval(), blob["train_logits"], arch, "cache",
                       {**info, "key": k, "path": str(path), **json.loads(blob["meta"])},
                       transfer_logits=blob.get("transfer_logits"))
    log(f"teacher: training {arch} on {len(data.train)} images, {plan['steps']} steps "
        f"({rule_text(plan)})")
    start = time.perf_counter()
    before = steps_taken()
    module = train(fresh, data.train.images, data.train.labels, data.task, settings, "teacher")
    seconds = time.perf_counter() - start
    logits = predict_logits(module, data.train.images, fast=True)
    transfer = _transfer_logits(module, data)
    meta = {"train_seconds": round(seconds, 1), "train_steps": steps_taken() - before,
            "validation_auc": round(validation_auc(module, data), 4), "rule": rule_text(plan)}
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"state_dict": module.state_dict(), "train_logits": logits,
                    "transfer_logits": transfer, "meta": json.dumps(meta)}, buf)
        try:
            cache.atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:  # the run has its teacher; only the shortcut is lost
            print(f"warning: {path}: teacher cache not written ({exc})", file=sys.stderr)
    return Teacher(module, logits, arch, "trained", {**info, "key": k, "path": str(path), **meta},
                   transfer_logits=transfer)


def validation_auc(module: nn.Module, data: DataBundle) -> float:
    """The teacher's AUC on the validation split (never the test split), for the manifest."""
    return auc_of(module, data.task, data.val.images, data.val.labels)


def rule_text(plan: dict) -> str:
    """The teacher's budget rule in words, for the log, the manifest and the report."""
    which = ("the students' budget" if plan["student_steps"] > plan["own_steps"]
             else "its own budget")
    return (f"AdamW under the training rule, {plan['steps']} steps: {which} (its own "
            f"--teacher-epochs {plan['own_steps']}, the students' {plan['student_steps']}, "
            f"whichever is more)")


def for_config(cfg, data: DataBundle):
    """The run's teacher as its configuration names it: the --teachers ensemble, else one
    teacher (trained and cached, or --teacher-checkpoint). `bench run` and `bench search`
    both start from it."""
    t = cfg.training
    students = max(t.student_epochs, t.student_epochs_max)  # a kd:epochs=N may train longer
    if t.teachers:
        return get_ensemble(t.teachers, data, t.teacher_epochs, cfg.seed, cfg.output.use_cache,
                            t.pretrained, students)
    return get_teacher(t.teacher, data, t.teacher_epochs, cfg.seed, t.teacher_checkpoint,
                       cfg.output.use_cache, t.pretrained, students)
