"""--class-weights: the weights against scikit-learn's and torch's own weighted losses, the
`auto` rule, and a loaded dataset's task carrying them to every trained step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from bench.data import class_weights
from bench.task_kinds import Task
from tests.data.test_loaders import dataset, level, make_folder, save


def test_balanced_weights_are_scikit_learns_and_ignore_unlabelled_images():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10 + [-1] * 50)  # -1: unlabelled (kd's images)
    got = class_weights.weights("balanced", "multiclass", 3, y)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y[y >= 0])
    assert np.allclose(got, expected)
    assert class_weights.imbalance("multiclass", y) == pytest.approx(6.0)


def test_auto_weighs_only_an_imbalanced_single_label_split():
    balanced = np.array([0, 1] * 50)
    skewed = np.array([0] * 70 + [1] * 30)
    assert class_weights.weights("auto", "binary", 2, balanced) is None
    assert class_weights.weights("auto", "binary", 2, np.array([0] * 55 + [1] * 45)) is None
    assert np.allclose(class_weights.weights("auto", "binary", 2, skewed), [100 / 140, 100 / 60])
    assert class_weights.weights("none", "binary", 2, skewed) is None
    multilabel = np.array([[1, 0], [0, 0], [0, np.nan], [0, 1]], dtype=np.float32)
    assert class_weights.weights("auto", "multilabel", 2, multilabel) is None
    # balanced multilabel: each label's negatives over its positives (NaN: not counted)
    assert np.allclose(class_weights.weights("balanced", "multilabel", 2, multilabel), [3.0, 2.0])


def test_the_weighted_loss_is_torchs_weighted_cross_entropy_over_labelled_images():
    torch.manual_seed(0)
    logits, y = torch.randn(12, 3), torch.tensor([0, 1, 2, 2, -1, 1, 0, -1, 0, 0, 0, 1])
    task = Task("multiclass", ("a", "b", "c"), class_weight=(0.5, 1.5, 3.0))
    labelled = y >= 0
    expected = F.cross_entropy(logits[labelled], y[labelled], weight=torch.tensor([0.5, 1.5, 3.0]))
    assert torch.allclose(task.loss(logits, y), expected)
    assert torch.allclose(Task("multiclass", ("a", "b", "c")).loss(logits, y),
                          F.cross_entropy(logits[labelled], y[labelled]))
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scores = torch.randn(3, 2)
    weighted = Task("multilabel", ("x", "y"), class_weight=(4.0, 0.5))
    assert torch.allclose(weighted.loss(scores, targets), F.binary_cross_entropy_with_logits(
        scores, targets, pos_weight=torch.tensor([4.0, 0.5])))
    with pytest.raises(ValueError, match="2 class weights for 3 classes"):
        Task("multiclass", ("a", "b", "c"), class_weight=(1.0, 2.0))


def test_a_loaded_imbalanced_folder_carries_its_weights_and_says_so(tmp_path):
    root = make_folder(tmp_path / "skewed", ["Normal"], 24)
    for i in range(8):
        save(root / "Sick" / f"s{i}.png", level(24 + i))
    assert dataset(f"folder:{root}").task.class_weight is None  # the default: none
    auto = dataset(f"folder:{root}", class_weights="auto")
    labels = auto.train.labels
    assert np.allclose(auto.task.class_weight,
                       compute_class_weight("balanced", classes=np.arange(2), y=labels))
    assert auto.info["class_weights"].startswith("auto: hard-label loss weighted")
    plain = dataset(f"folder:{root}", class_weights="none")
    assert plain.task.class_weight is None
    assert plain.info["class_weights"] == "unweighted (--class-weights none)"
    with pytest.raises(ValueError, match="--class-weights 'inverse': expected one of"):
        dataset(f"folder:{root}", class_weights="inverse")


def test_balanced_synthetic_data_is_left_unweighted_under_auto():
    from bench.data import SyntheticSizes

    bundle = dataset("synthetic", class_weights="auto",
                     sizes=SyntheticSizes(train=64, val=32, test=32, calibration=8, transfer=0))
    assert bundle.task.class_weight is None
    assert bundle.info["class_weights"].startswith("unweighted (auto: the largest class 1.00x")
