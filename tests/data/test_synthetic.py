import numpy as np
import pytest

from bench.config.sections import DataConfig
from bench.data import SyntheticSizes, load_dataset
from bench.data.synthetic import class_names, generate


def test_same_seed_same_images_and_other_seed_differs():
    a, ya = generate(20, 32, seed=3)
    b, yb = generate(20, 32, seed=3)
    c, _ = generate(20, 32, seed=4)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)


def test_shapes_and_labels_per_task():
    x, y = generate(30, 24, "binary")
    assert x.shape == (30, 1, 24, 24) and x.dtype == np.float32 and set(y) == {0, 1}
    x, y = generate(40, 24, "multiclass", 4)
    assert sorted(np.bincount(y)) == [10, 10, 10, 10]
    x, y = generate(40, 24, "multilabel", 5)
    assert y.shape == (40, 5) and set(np.unique(y)) <= {0.0, 1.0}
    assert class_names("multilabel", 5) == ("atelectasis", "cardiomegaly", "consolidation",
                                            "edema", "effusion")


def test_positive_images_differ_from_negatives_only_faintly():
    x, y = generate(400, 32, seed=0)
    gap = abs(x[y == 1].mean() - x[y == 0].mean())
    assert 0 < gap < 0.25 * x.std()  # a faint finding, not a giveaway


def test_bundle_is_standardised_and_splits_are_disjoint():
    sizes = SyntheticSizes(train=64, val=16, test=32, calibration=8)
    d = load_dataset(DataConfig(image_size=16, sizes=sizes), 0)
    assert abs(d.train.images.mean()) < 1e-3 and abs(d.train.images.std() - 1) < 1e-3
    assert len(d.calibration) == 8 and d.info["normalization"]["std"] > 0
    flat = {x.tobytes() for x in d.train.images}
    assert not any(x.tobytes() in flat for x in d.test.images)


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="--dataset 'bogus:/nowhere': unknown dataset"):
        load_dataset(DataConfig(dataset="bogus:/nowhere", image_size=16), 0)
