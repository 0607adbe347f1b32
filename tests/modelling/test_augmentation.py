"""Augmentation under the training rule (bench.data.augmentation, bench.modelling.augment)
and consistent distillation (bench.modelling.parent): the policy each dataset states, a
reproducible stream that moves on each step, `student` and `kd` seeing the same views,
and the soft labels being the parent's on the very view the student trains on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data import FORMATS, DataConfig, cards, dataset_policy
from bench.data.augmentation import POLICIES, resolve
from bench.modelling import training
from bench.modelling.augment import Augmenter
from bench.modelling.parent import Parent
from bench.modelling.training_rule import TrainSettings
from methods.student import train_student
from tests.helpers import TinyNet


def test_each_dataset_states_its_policy():
    # the generated radiographs have the heart on one side: never flipped
    assert dataset_policy(DataConfig()) == "upright"
    assert not POLICIES["upright"].flips and POLICIES["upright"].degrees > 0
    assert POLICIES["any-orientation"].flips
    assert not POLICIES["none"].active
    # formats: chest X-rays keep their side; skin lesions flip freely
    assert FORMATS.get("chexpert").augment == "upright"
    assert FORMATS.get("ham10000").augment == "any-orientation"
    assert FORMATS.get("folder").augment == "upright"
    # a card overrides its format: blood smears and malaria cells flip, chest X-rays do not
    assert cards.get("bloodmnist").augment == "any-orientation"
    assert cards.get("malaria-cells").augment == "any-orientation"
    assert cards.get("chestmnist").augment == ""  # its format's, upright
    assert resolve("dataset", "any-orientation") == "any-orientation"
    assert resolve("none", "any-orientation") == "none"


def test_the_stream_is_seeded_and_moves_on_each_step():
    x = torch.randn(8, 1, 16, 16)
    first, again = Augmenter("upright", 0), Augmenter("upright", 0)
    step1, step2 = first(x), first(x)
    assert torch.equal(step1, again(x))  # the same seed: the same views
    assert not torch.equal(step1, step2)  # the next step: new views
    assert not torch.equal(step1, Augmenter("upright", 1)(x))
    assert step1.shape == x.shape and torch.isfinite(step1).all()
    assert Augmenter("none", 0)(x) is x


def _inputs_seen(model: torch.nn.Module) -> list:
    seen: list = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone())
                                    if model.training else None)
    return seen


def test_student_and_kd_train_on_the_same_views(tiny_context, monkeypatch):
    ctx = dataclasses.replace(tiny_context, augment="upright", student_epochs=1.0)
    views: dict[str, list] = {}
    real_train = training.train

    def spy(model, *args, **kwargs):
        views[args[4]] = _inputs_seen(model)  # the label: student or kd
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr("methods.student.train", spy)
    monkeypatch.setattr("methods.student.build", lambda arch, outputs: TinyNet())
    train_student(ctx, 0, 0.0, None, 0.0, 1.0, "student")
    from methods.student import online_parent

    train_student(ctx, 0, 0.0, ctx.teacher_logits, 0.7, 4.0, "kd", None,
                  online_parent(ctx.teacher, ctx, 4.0))
    # 3 steps, then the batch-norm re-estimation's passes (un-augmented)
    assert len(views["student"]) == len(views["kd"]) > 3
    for a, b in zip(views["student"], views["kd"], strict=True):
        assert torch.equal(a, b)


def test_soft_labels_are_the_parents_on_the_view_the_student_sees(tiny_context):
    torch.manual_seed(0)
    teacher = TinyNet().eval()
    student = TinyNet()
    seen = _inputs_seen(student)
    scored: list = []
    parent = Parent((teacher,))

    class Spy(Parent):
        def __call__(self, x):
            out = parent(x)
            scored.append((x.detach().clone(), out))
            return out

    images, labels = tiny_context.train_images, tiny_context.train_labels
    # precomputed logits that would poison training if read: the parent must answer instead
    poison = torch.full((len(images), 2), float("nan"))
    settings = TrainSettings(epochs=1, seed=0, augment="upright")
    training.train(student, images, labels, tiny_context.task, settings, "kd",
                   teacher_logits=poison, alpha=0.5, parent=Spy((teacher,)), recalibrate=False)
    assert len(scored) == len(seen) == 3
    for view, (scored_view, logits) in zip(seen, scored, strict=True):
        assert torch.equal(view, scored_view)
        with torch.no_grad():
            assert torch.allclose(logits, teacher(view.contiguous()), atol=1e-5)
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert not teacher.training  # put back as it was found


def test_without_augmentation_the_precomputed_logits_stay(tiny_context):
    """`none`: the parent is never run; the cached logits are exactly its answers."""
    class Never(Parent):
        def __call__(self, x):
            raise AssertionError("the parent ran without augmentation")

    settings = TrainSettings(epochs=1, seed=0)
    model = training.train(TinyNet(), tiny_context.train_images, tiny_context.train_labels,
                           tiny_context.task, settings, "kd", tiny_context.teacher_logits,
                           alpha=0.5, parent=Never((tiny_context.teacher,)))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("value", ["bogus", "flip"])
def test_a_bad_augment_is_one_line_exit_2(capsys, monkeypatch, value):
    def never(cfg):
        raise AssertionError("bench.pipeline.runner.run reached with bad input")

    monkeypatch.setattr("bench.pipeline.runner.run", never)
    assert main(["run", "--augment", value]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and f"--augment {value!r}: unknown" in lines[0], lines
    assert np.all([c in lines[0] for c in ("dataset", "none", "upright", "any-orientation")])
