"""The one training rule (bench.modelling.training_rule), the teacher's early stop, pruning's fine-tune
from its parent, iterative pruning, and what a step cost (optimiser steps counted)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import methods
from bench.modelling.training import EarlyStop, as_input, steps_taken, train
from bench.modelling.training_rule import (
    FINETUNE_LR,
    QAT_LR,
    finetune_settings,
    from_scratch_settings,
)
from tests.helpers import TinyNet


def test_every_trained_step_follows_one_rule():
    from bench.modelling.architectures import build

    mobilenet, densenet = build("mobilenet_v2", 2), build("densenet121", 2)
    student, teacher = from_scratch_settings(mobilenet, 2.0, 0), from_scratch_settings(densenet, 2.0, 0)
    tune = finetune_settings(1.0, 0)
    assert (student.optimizer, student.lr, student.weight_decay) == ("adamw", 5e-3, 0.05)
    assert (teacher.optimizer, teacher.lr) == ("adamw", 2e-3)  # no depthwise convolutions
    assert (tune.optimizer, tune.lr, tune.weight_decay) == ("adamw", FINETUNE_LR, 0.05)
    assert {s.batch_size for s in (student, teacher, tune)} == {32}
    assert student.total_steps(2000) == 126 and tune.total_steps(2000) == 63
    assert from_scratch_settings(mobilenet, 6.0, 0, steps=10).total_steps(2000) == 10
    assert from_scratch_settings(mobilenet, 1.0, 0, lr=1e-3).lr == 1e-3


def test_method_parameters_default_to_the_rule():
    assert methods.get("kd").param("lr").default == 0.0  # the rule's for the architecture
    for name in ("prune.structured", "prune.magnitude"):
        assert methods.get(name).param("lr").default == FINETUNE_LR
    assert methods.get("quant.qat").param("lr").default == QAT_LR
    for name in ("prune.structured", "prune.magnitude"):
        assert methods.get(name).param("distil_from").default == "parent"


def test_steps_are_counted_as_they_are_taken(tiny_data):
    before = steps_taken()
    train(TinyNet(), tiny_data.train.images, tiny_data.train.labels, tiny_data.task,
          from_scratch_settings(TinyNet(), 1.0, 0, steps=5), "t")
    assert steps_taken() - before == 5


def test_early_stop_stops_once_patience_runs_out_after_the_warm_up_and_keeps_the_best(tiny_data):
    """Scores at steps 2 and 4 fall in the warm-up: the dip to 0.6 does not count, the
    first score after it (step 6) is the reference, step 8 gains, and four steps later
    without a gain it stops; the best weights are the warm-up's step 2."""
    scores = iter([0.8, 0.6, 0.7, 0.75, 0.74, 0.745, 0.9, 0.9])
    seen = {}

    def score(model):
        value = next(scores)
        seen[value] = {k: v.clone() for k, v in model.state_dict().items()}
        return value

    stop = EarlyStop(score=score, every=2, patience=4, warmup=5)
    before = steps_taken()
    model = train(TinyNet(), tiny_data.train.images, tiny_data.train.labels, tiny_data.task,
                  from_scratch_settings(TinyNet(), 1.0, 0, steps=40), "t", early_stop=stop)
    assert steps_taken() - before == 12
    assert stop.stopped_at == 12 and stop.best_step == 2
    assert [s for _, s in stop.history] == [0.8, 0.6, 0.7, 0.75, 0.74, 0.745]
    assert "stopped early at step 12 of 40, no validation gain in 4 steps" in stop.outcome()
    weights = {k: v for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    for k, v in weights.items():  # the best step's weights (batch norm re-estimated after)
        assert torch.equal(v, seen[0.8][k]), k


def test_early_stop_never_stops_within_its_warm_up(tiny_data):
    stop = EarlyStop(score=lambda m: 0.5, every=1, patience=1, warmup=6)
    before = steps_taken()
    train(TinyNet(), tiny_data.train.images, tiny_data.train.labels, tiny_data.task,
          from_scratch_settings(TinyNet(), 1.0, 0, steps=20), "t", early_stop=stop)
    assert steps_taken() - before == 7  # step 6 the reference, step 7 without a gain


def test_teacher_plan_trains_at_least_as_long_as_the_students_may():
    from bench.modelling.teacher import rule_text, teacher_plan

    plan = teacher_plan(2000, 2.0, 6.0)
    assert (plan["steps"], plan["own_steps"], plan["student_steps"]) == (378, 126, 378)
    assert "378 steps: the students' budget" in rule_text(plan)
    assert teacher_plan(2000, 8.0, 6.0)["steps"] == 504  # its own budget when larger
    assert teacher_plan(2000, 2.0, None)["steps"] == 126  # a checkpoint or no students


def _chain(spec):
    (chain,) = methods.expand(spec)
    return chain


def test_a_chain_records_its_cost_in_steps_from_the_teacher(tiny_data, tiny_context):
    from bench.pipeline.artifacts import Builder

    class Cfg:  # what Builder reads
        seed = 0

    ctx = tiny_context
    builder = Builder.__new__(Builder)
    builder.ctx, builder.made = ctx, {}
    builder.teacher = methods.Artifact(name="teacher", arch="tiny", module=ctx.teacher,
                                       float_module=ctx.teacher)
    kd = builder.chain(_chain("kd"))
    pruned = builder.chain(_chain("kd+prune.structured:ratio=0.3"))
    quant = builder.chain(_chain("kd+prune.structured:ratio=0.3+quant.static"))
    per_epoch = -(-len(ctx.train_images) // 32)
    assert kd.train_steps == round(ctx.student_epochs * per_epoch)
    assert pruned.train_steps == kd.train_steps + round(ctx.finetune_epochs * per_epoch)
    assert quant.train_steps == pruned.train_steps  # calibration trains nothing
    assert quant.seconds >= pruned.seconds >= kd.seconds > 0
    assert methods.Artifact.provenance(pruned)["train_steps"] == pruned.train_steps


def test_pruning_distils_its_parent_by_default(tiny_context, monkeypatch):
    import methods.finetune as finetune

    parent_module = TinyNet(width=8).eval()
    parent = methods.Artifact(name="kd", arch="tiny", module=parent_module,
                              float_module=parent_module)
    taught = {}

    def fake_train(model, images, labels, task, settings, name, teacher_logits=None, **kw):
        taught[name] = teacher_logits
        return model.eval()

    monkeypatch.setattr(finetune, "train", fake_train)
    cls = methods.get("prune.structured")
    defaults = {p.name: p.default for p in cls.params}
    cls().apply(parent, tiny_context, **{**defaults, "ratio": 0.25})
    from bench.modelling.training import predict_logits

    # the parent's logits through the pass its soft targets take (the teacher's own are cached
    # through the same one: bench.modelling.training.predict_logits, `fast`)
    assert torch.equal(taught["prune.structured"], predict_logits(
        parent_module, tiny_context.train_images, fast=True))
    cls().apply(parent, tiny_context, **{**defaults, "ratio": 0.25, "distil_from": "teacher"})
    assert taught["prune.structured"] is tiny_context.teacher_logits


def test_iterative_pruning_prunes_in_rounds_to_the_same_size(tiny_teacher, tiny_context):
    from bench.modelling.architectures import count_params

    cls = methods.get("prune.structured")
    defaults = {p.name: p.default for p in cls.params}
    ctx = replace(tiny_context, finetune_epochs=0.68)
    before = steps_taken()
    once = cls().apply(tiny_teacher, ctx, **{**defaults, "ratio": 0.5, "round_to": 1})
    one_round = steps_taken() - before
    before = steps_taken()
    thrice = cls().apply(tiny_teacher, ctx, **{**defaults, "ratio": 0.5, "round_to": 1,
                                               "iterative_steps": 3})
    assert count_params(thrice.module)[0] == count_params(once.module)[0]
    assert count_params(thrice.module)[0] < count_params(tiny_teacher.module)[0]
    assert abs((steps_taken() - before) - one_round) <= 3  # the budget split, not tripled
    assert "in 3 rounds" in thrice.notes[0]
    x = as_input(torch.from_numpy(np.asarray(tiny_context.train_images[:4])))
    assert thrice.module(x).shape == (4, 2)
    with pytest.raises(ValueError, match="iterative_steps"):
        cls().apply(tiny_teacher, ctx, **{**defaults, "iterative_steps": 0})


def test_pruning_also_distils_on_the_unlabelled_images_in_the_same_steps(tiny_context,
                                                                          monkeypatch):
    import methods.finetune as finetune
    from bench.modelling.training import predict_logits

    rng = np.random.default_rng(1)
    transfer = rng.normal(size=(40, *tiny_context.train_images.shape[1:])).astype(np.float32)
    ctx = replace(tiny_context, transfer_images=transfer)
    parent_module = TinyNet(width=8).eval()
    parent = methods.Artifact(name="kd", arch="tiny", module=parent_module,
                              float_module=parent_module)
    seen = {}

    def fake_train(model, images, labels, task, settings, name, teacher_logits=None, **kw):
        seen.update(images=images, labels=labels, logits=teacher_logits, settings=settings)
        return model.eval()

    monkeypatch.setattr(finetune, "train", fake_train)
    cls = methods.get("prune.structured")
    defaults = {p.name: p.default for p in cls.params}
    made = cls().apply(parent, ctx, **{**defaults, "ratio": 0.25, "unlabelled": True})
    n = len(ctx.train_images)
    assert len(seen["images"]) == n + 40
    assert torch.equal(seen["logits"][n:], predict_logits(parent_module, transfer, fast=True))
    assert ctx.task.unlabelled(1).numpy()[0] == seen["labels"][n] or np.isnan(seen["labels"][n])
    assert seen["settings"].total_steps(len(seen["images"])) == \
        finetune_settings(ctx.finetune_epochs, 0).total_steps(n)  # labelled epochs, not more
    assert "also on 40 unlabelled images" in made.notes[1]
    cls().apply(parent, ctx, **{**defaults, "ratio": 0.25, "unlabelled": False})
    assert len(seen["images"]) == n
