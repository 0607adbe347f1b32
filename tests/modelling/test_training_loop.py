"""The training loop's own rules (bench.modelling.training): where the model is
(`--device`) and the batch-norm re-estimation after training.

Every training and scoring pass runs on the run's device, a scoring pass leaves the model
on the device it found it on (a fine-tune's validation score inside training must not send
the model back to the CPU), and the configured device is set before anything trains.

This machine has no GPU, so `Placed` stands in for a model on one: torch's CPU build
has no second device, and `cpu:0` is the CPU under a second name (tensors really go
there), which `Placed` tells apart from `cpu` by recording where it was sent; the
device check (`training.device_of`) reads that record.
"""

import importlib.util

import numpy as np
import pytest
import torch

from bench.modelling import training
from bench.modelling.training import EarlyStop, auc_of, predict_logits, train
from bench.modelling.training_rule import from_scratch_settings
from tests.helpers import TinyNet

RUN = torch.device("cpu", 0)  # the run's device, an accelerator's stand-in
HOME = torch.device("cpu")


class Placed(TinyNet):
    """TinyNet that records the device it was last sent to (`at`) and, at each forward
    pass, whether it was training and where it was: on a GPU, a forward pass with the
    weights elsewhere than the batch fails."""

    def __init__(self):
        super().__init__()
        self.at = HOME
        self.passes: list[tuple[bool, torch.device]] = []

    def to(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args and isinstance(args[0], (str, torch.device))
                            else None)
        if device is not None:
            self.at = torch.device(device)
        return super().to(*args, **kwargs)

    def cpu(self):
        self.at = HOME
        return super().cpu()

    def forward(self, x):
        self.passes.append((self.training, self.at))
        return super().forward(x)


@pytest.fixture
def on_run_device(monkeypatch):
    """The run's device set as `--device` sets it, the device check reading `Placed`."""
    monkeypatch.setattr(training, "_DEVICE", training._DEVICE)
    monkeypatch.setattr(training, "device_of", lambda model: model.at, raising=False)
    training.use_device(str(RUN))


def test_a_scoring_pass_leaves_the_model_where_it_found_it(tiny_data, on_run_device):
    images = tiny_data.val.images
    on_device = Placed().to(RUN)
    predict_logits(on_device, images)
    assert on_device.at == RUN  # found on the run's device: left there
    on_cpu = Placed()
    predict_logits(on_cpu, images)
    assert on_cpu.at == HOME  # found on the CPU: back on it
    assert {at for _, at in on_device.passes + on_cpu.passes} == {RUN}  # scored on the device


def test_training_and_its_validation_scores_stay_on_the_run_device(tiny_data, on_run_device):
    """A fine-tune scored on validation between its steps (what --device cuda broke: the
    first score left the model on the CPU and the next batch went to CUDA)."""
    val = tiny_data.val
    stop = EarlyStop(score=lambda m: auc_of(m, tiny_data.task, val.images, val.labels),
                     every=1, patience=10, score_start=True)
    model = Placed()
    out = train(model, tiny_data.train.images, tiny_data.train.labels, tiny_data.task,
                from_scratch_settings(model, 1.0, 0, steps=4), "t", early_stop=stop)
    assert len(stop.history) == 5  # scored before the first step and after each
    assert sum(training for training, _ in model.passes) >= 4
    misplaced = [(i, t, at) for i, (t, at) in enumerate(model.passes) if at != RUN]
    assert not misplaced, f"passes away from the run's device: {misplaced[:3]}"
    assert out.at == HOME  # a trained model comes back on the CPU


class Stop(Exception):
    pass


def _record(monkeypatch, seen: list) -> None:
    def use_device(device):
        seen.append(device)
        raise Stop

    monkeypatch.setattr(training, "use_device", use_device)


def test_each_entry_point_sets_the_configured_device_before_training(monkeypatch, tmp_path):
    """`bench run`, `bench search`, a cluster task and a Ray Tune trial set `--device`
    (the process-wide setting every pass above reads) before anything trains."""
    from dataclasses import replace

    from bench.cluster import tasks
    from bench.config.sections import RunConfig
    from bench.pipeline import runner
    from bench.search import _search

    cfg = replace(RunConfig(), device="cuda")
    seen: list = []
    _record(monkeypatch, seen)
    with pytest.raises(Stop):
        runner.run_one(cfg)
    with pytest.raises(Stop):
        _search(cfg, None, tmp_path, {}, None, None, None)
    with pytest.raises(Stop):
        tasks.train_teacher(cfg, None)
    with pytest.raises(Stop):
        tasks.apply_step(None, (), None, 1, cfg.device)
    expected = 4
    if importlib.util.find_spec("ray") is not None:  # a Ray Tune trial of `bench search`
        from bench.search import ray_tune

        with pytest.raises(Stop):
            ray_tune._trial_figures("kd", {"cfg": cfg, "ctx": None})
        expected += 1
    assert seen == ["cuda"] * expected


def test_batch_norm_statistics_are_re_estimated_by_torchs_update_bn(tiny_data, monkeypatch):
    """The re-estimation is torch.optim.swa_utils.update_bn (called, not re-implemented):
    the same statistics as update_bn on the same batches, the momenta kept (a checkpoint
    rebuilds the model that was trained), eval mode after."""
    from torch.optim import swa_utils

    from bench.modelling.training import batches, recalibrate_batchnorm
    from tests.helpers import snapshot

    torch.manual_seed(0)
    model = TinyNet()
    model.features[1].momentum = 0.3
    reference = TinyNet()
    reference.load_state_dict(model.state_dict())
    reference.features[1].momentum = 0.3
    images = tiny_data.train.images
    calls = []
    real = swa_utils.update_bn
    monkeypatch.setattr(swa_utils, "update_bn",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    recalibrate_batchnorm(model, images, 16)
    assert calls == [1]
    monkeypatch.undo()
    real((x for x, _, _ in batches(images, None, 32, None)), reference)
    got, want = snapshot(model), snapshot(reference)
    for key, value in want.items():
        assert torch.allclose(got[key].float(), value.float()), key
    assert not model.training and model.features[1].momentum == 0.3
    assert model.features[4].momentum == 0.1


def test_batch_norm_is_re_estimated_on_images_from_the_whole_split_not_its_first_ones():
    """A folder's training split is in class order: statistics from its first 512 images
    would see only the first classes. 600 images of one level, then 600 of another: the
    re-estimated mean lies between them, near their average."""
    from bench.modelling.training import recalibrate_batchnorm

    images = np.concatenate([np.zeros((600, 1, 4, 4), np.float32),
                             np.full((600, 1, 4, 4), 5.0, np.float32)])
    norm = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    recalibrate_batchnorm(norm, images, 32)
    mean = float(norm[0].running_mean.mean())
    assert 2.0 < mean < 3.0, mean
    again = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    recalibrate_batchnorm(again, images, 32)
    assert torch.equal(again[0].running_mean, norm[0].running_mean)  # seeded: the same draw
