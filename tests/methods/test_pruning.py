"""Pruning run as a real run runs it, with a validation split: the fine-tune's early stop
(it stops, keeps the best step's weights, and its note says so), and torch-pruning's
current API (`BasePruner`, not its deprecated alias `MetaPruner`).

tests/conftest.py's `tiny_context` has no validation split, so the other pruning tests
fine-tune without the early stop; `validated` adds the tiny data's validation split.
"""

from dataclasses import replace

import pytest
import torch

import methods
from bench.modelling import training
from bench.modelling.architectures import count_params
from bench.modelling.training import steps_taken
from tests.helpers import TinyNet, snapshot


@pytest.fixture
def validated(tiny_context, tiny_data):
    return replace(tiny_context, val_images=tiny_data.val.images, val_labels=tiny_data.val.labels)


def _prune(parent, ctx, **params):
    cls = methods.get("prune.structured")
    defaults = {p.name: p.default for p in cls.params}
    return cls().apply(parent, ctx, **{**defaults, "round_to": 1, **params})


def _parent():
    torch.manual_seed(0)
    module = TinyNet(width=8).eval()
    return methods.Artifact(name="kd", arch="tiny", module=module, float_module=module)


def test_a_pruning_fine_tune_stops_early_keeps_the_best_step_and_says_so(validated,
                                                                        monkeypatch):
    """Validation scores scripted (the AUC each scoring pass returns), one per step of a
    30-step fine-tune: its warm-up (steps 0-5) peaks at step 1 and dips; after it step 6
    is the reference and step 7 gains; six steps (a fifth of the schedule) later without a
    gain it stops, at step 13, keeping step 1's weights."""
    scripted = iter([0.60, 0.70, 0.50, 0.45, 0.40, 0.42, 0.55, 0.56, 0.555, 0.56, 0.558, 0.5,
                     0.52, 0.53, 0.90, 0.90])
    scored: dict[int, dict] = {}  # step -> the weights of the last model scored there
    real_predict = training.predict_logits

    def predict_logits(model, *args, **kwargs):
        scored[steps_taken() - before] = snapshot(model)
        return real_predict(model, *args, **kwargs)

    def auc_roc(*args):
        return (next(scripted),)

    monkeypatch.setattr(training, "predict_logits", predict_logits)  # what auc_of calls
    monkeypatch.setattr(training, "auc_roc", auc_roc)  # and what it returns
    budget = round(10 * -(-len(validated.train_images) // 32))  # 10 epochs: 30 steps
    before = steps_taken()
    made = _prune(_parent(), validated, ratio=0.25, finetune_epochs=10.0)
    assert steps_taken() - before == 13 < budget
    assert sorted(scored) == list(range(14))  # the pruned model, then after each step
    kept = snapshot(made.module)
    for key, value in scored[1].items():  # step 1's weights (batch norm re-estimated)
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(kept[key], value), key
    note = made.notes[1]
    assert f"stopped early at step 13 of {budget}, no validation gain in 6 steps after the " \
           "warm-up's 6" in note, note
    assert "kept the weights of step 1" in note, note
    assert "fine-tuned 10 epochs" not in note, note  # it did not


def test_a_fine_tune_that_runs_its_budget_says_so(validated, monkeypatch):
    scores = iter([0.60, 0.70, 0.80, 0.90])
    monkeypatch.setattr(training, "auc_roc", lambda *args: (next(scores),))
    made = _prune(_parent(), validated, ratio=0.25, finetune_epochs=1.0)  # 3 steps
    note = made.notes[1]
    assert "fine-tuned 1 epochs" in note and "stopped early" not in note, note
    assert "all 3 steps; kept the weights of step 3" in note, note


def test_structured_pruning_uses_torch_prunings_base_pruner(tiny_context, monkeypatch):
    """torch-pruning's MetaPruner is a deprecated alias of BasePruner: with the alias gone,
    as a later torch-pruning may drop it, pruning works the same."""
    import torch_pruning as tp

    assert tp.pruner.MetaPruner is tp.pruner.BasePruner  # the installed one: an alias

    def gone(*args, **kwargs):
        raise AttributeError("torch_pruning.pruner.MetaPruner: deprecated, use BasePruner")

    monkeypatch.setattr(tp.pruner, "MetaPruner", gone)
    parent = _parent()
    made = _prune(parent, tiny_context, ratio=0.5, finetune_epochs=0.0)
    assert count_params(made.module)[0] < count_params(parent.module)[0]


def test_an_architecture_torch_pruning_cannot_trace_fails_in_one_line(tiny_context):
    """ShuffleNetV2's channel shuffle makes torch-pruning's graph divide by zero; the row's
    error says which architecture, why, and what to do instead."""
    from bench.modelling.architectures import build

    torch.manual_seed(0)
    module = build("shufflenet_v2_x0_5", tiny_context.task.num_outputs).eval()
    parent = methods.Artifact(name="kd", arch="shufflenet_v2_x0_5", module=module,
                              float_module=module)
    with pytest.raises(ValueError) as caught:
        _prune(parent, tiny_context, finetune_epochs=0.0)
    message = str(caught.value)
    assert "\n" not in message
    assert "dependency graph cannot trace shufflenet_v2_x0_5 (ZeroDivisionError" in message
    assert "use prune.magnitude" in message
