"""The teacher's training (bench.modelling.teacher): it trains the optimiser steps its
plan says, and its plan never gives it fewer steps than any step of the run that trains
the student architecture (`student`, `kd`, a `kd:epochs=N` override included; for
`bench search`, any its space may draw). A tiny model on the tiny data, not cached."""

import pytest

from bench.cli import _parser
from bench.config import settings
from bench.modelling import teacher as teachers
from bench.modelling.training import steps_taken
from tests.helpers import TinyNet

PER_EPOCH = 3  # the tiny data's 96 training images at batch 32


@pytest.fixture
def tiny_teacher_arch(monkeypatch):
    """Every teacher architecture built as a TinyNet (the plan and the loop are what is
    tested, not DenseNet-121)."""
    monkeypatch.setattr(teachers, "build", lambda arch, outputs, pretrained=False:
                        TinyNet(outputs))


def _config(*options):
    cfg = settings.build(_parser().parse_args(["run", "--no-cache", *options]))
    settings.validate(cfg)
    return cfg


def test_the_teacher_trains_the_steps_its_plan_says(tiny_data, tiny_teacher_arch):
    before = steps_taken()
    made = teachers.get_teacher("tiny", tiny_data, 1.0, 0, use_cache=False, student_epochs=2.0)
    plan = made.info["plan"]
    assert plan == teachers.teacher_plan(len(tiny_data.train), 1.0, 2.0)
    assert plan["steps"] == 2 * PER_EPOCH  # the students' budget: more than its own 3
    assert steps_taken() - before == plan["steps"] == made.info["train_steps"]
    assert made.source == "trained" and str(plan["steps"]) in made.info["rule"]


def test_a_kd_epochs_override_is_part_of_the_students_budget(tiny_data, tiny_teacher_arch):
    cfg = _config("--teacher-epochs", "1", "--student-epochs", "2",
                  "--methods", "kd:epochs=4,prune.structured")
    before = steps_taken()
    made = teachers.for_config(cfg, tiny_data)
    assert made.info["plan"]["student_steps"] == 4 * PER_EPOCH  # kd's own 4 epochs, not 2
    assert steps_taken() - before == 4 * PER_EPOCH
    # its own budget when larger; --student-epochs when no override is larger
    assert teachers.for_config(_config("--teacher-epochs", "5", "--student-epochs", "2",
                                       "--methods", "kd:epochs=4"),
                               tiny_data).info["plan"]["steps"] == 5 * PER_EPOCH
    assert teachers.for_config(_config("--teacher-epochs", "1", "--student-epochs", "2",
                                       "--methods", "kd:epochs=1,kd"),
                               tiny_data).info["plan"]["steps"] == 2 * PER_EPOCH


def test_a_searchs_teacher_covers_every_kd_budget_its_space_may_draw():
    """The search's teacher, and its finalists' run's (the same configuration), train at
    least the most epochs the space gives kd: a range's top, a choice's largest."""
    from bench.search import space, student_budget

    args = _parser().parse_args(["search", "--student-epochs", "2", "--trials", "1"])
    cfg = settings.build(args)
    for text, most in (("kd:epochs=1..7,alpha=0.5|0.7", 7.0), ("kd:epochs=3|9+quant.static", 9.0),
                       ("prune.structured:ratio=0.2..0.8", 0.0), ("kd:epochs=1", 0.0)):
        searched = student_budget(cfg, space.parse(text), reference=None)
        assert searched.training.student_epochs_max == most, text  # 0: --student-epochs
    with_reference = student_budget(cfg, space.parse("prune.structured:ratio=0.2..0.8"),
                                    reference="kd:epochs=5+quant.static")
    assert with_reference.training.student_epochs_max == 5.0
