import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.task_kinds import Task


def test_kd_loss_is_zero_for_identical_logits_and_matches_hinton():
    task = Task("multiclass", ("a", "b", "c"))
    s = torch.randn(8, 3)
    assert task.kd_loss(s, s.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    t = torch.randn(8, 3)
    p_t = F.softmax(t / 4, 1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / 4, 1))).sum(1).mean() * 16
    assert task.kd_loss(s, t, 4.0).item() == pytest.approx(manual.item(), rel=1e-5)


def test_multilabel_kd_is_bernoulli_kl():
    task = Task("multilabel", ("a", "b"))
    s, t = torch.randn(4, 2), torch.randn(4, 2)
    p, q = torch.sigmoid(t / 2), torch.sigmoid(s / 2)
    manual = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * 4
    assert task.kd_loss(s, t, 2.0).item() == pytest.approx(manual.item(), rel=1e-5)


def test_multilabel_loss_masks_ignored_labels():
    task = Task("multilabel", ("a", "b"))
    logits = torch.tensor([[2.0, -1.0]])
    full = task.loss(logits, torch.tensor([[1.0, 0.0]]))
    masked = task.loss(logits, torch.tensor([[1.0, float("nan")]]))
    assert masked.item() == pytest.approx(F.softplus(torch.tensor(-2.0)).item(), rel=1e-5)
    assert masked.item() != pytest.approx(full.item())


def test_binary_scores_are_positive_class_probability():
    task = Task("binary", ("neg", "pos"))
    probs = task.probabilities(torch.tensor([[0.0, 0.0], [0.0, 10.0]])).numpy()
    assert np.allclose(task.scores(probs), [0.5, 1.0], atol=1e-4)
    assert list(task.predicted_labels(probs)) == [1, 1]


def test_binary_needs_two_names():
    with pytest.raises(ValueError):
        Task("binary", ("only",))
