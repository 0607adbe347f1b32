import gzip
import pickle

import pytest
import torch
from torch import nn

from bench.modelling.architectures import (
    build,
    count_buffers,
    count_macs,
    count_params,
    load_checkpoint,
    state_bytes,
)
from tests.helpers import TinyNet


def test_param_counts_match_torch():
    m = TinyNet()
    total, nonzero = count_params(m)
    assert total == sum(p.numel() for p in m.parameters())  # running stats are buffers
    assert count_buffers(m) == sum(b.numel() for n, b in m.named_buffers() if "running" in n)
    with torch.no_grad():
        m.classifier.weight.zero_()
    assert count_params(m)[1] == nonzero - m.classifier.weight.numel()


def test_params_are_what_papers_count():
    # the chexpert-kd paper: DenseNet-121 6.96M and MobileNetV2 2.23M with 5 outputs
    assert count_params(build("densenet121", 5))[0] == 6_958_981
    assert count_params(build("mobilenet_v2", 5))[0] == 2_230_277


def test_state_bytes_counts_every_tensor():
    m = TinyNet()
    expected = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    assert state_bytes(m) == expected


def test_macs_of_a_known_layer():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert count_macs(conv, 16) == 3 * 8 * 9 * 16 * 16


def test_build_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture .densenet999.: not a torchvision"):
        build("densenet999", 2)


def test_checkpoint_round_trip(tmp_path):
    m = build("resnet18", 3)
    path = tmp_path / "w.pt"
    torch.save(m.state_dict(), path)
    loaded = load_checkpoint("resnet18", 3, str(path))
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), loaded.state_dict().values(), strict=True))


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_loading_never_runs_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(ValueError, match="evil.pt: not a weights-only PyTorch checkpoint"):
        load_checkpoint("resnet18", 2, str(path))
    assert "code ran" not in capsys.readouterr().out


def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="missing.pt: teacher checkpoint not found"):
        load_checkpoint("resnet18", 2, str(tmp_path / "missing.pt"))
    path = tmp_path / "wrong.pt"
    torch.save(build("resnet18", 5).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit resnet18 with 2 outputs"):
        load_checkpoint("resnet18", 2, str(path))
    (tmp_path / "junk.pt").write_bytes(gzip.compress(b"junk"))
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint("resnet18", 2, str(tmp_path / "junk.pt"))


def test_concatenated_backbones_one_head():
    from bench.modelling.architectures import build, count_params

    m = build("resnet18+vgg11", 3).eval()
    assert m.classifier.in_features == 512 + 512  # resnet18 pooled + vgg pooled conv features
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    parts = count_params(build("resnet18", 3))[0] + count_params(build("vgg11", 3))[0]
    assert count_params(m)[0] < parts  # the members' own heads are gone


def test_ensemble_teacher_averages_probabilities_and_kd_targets():
    from bench.modelling.architectures import EnsembleTeacher
    from bench.task_kinds import Task

    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(5, 4)
    task = Task("multiclass", ("x", "y", "z"))
    ens = EnsembleTeacher([a, b], multilabel=False)
    with torch.no_grad():
        mean = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2
        assert torch.allclose(task.probabilities(ens(x)), mean, atol=1e-6)
        soft = task.ensemble_soft_logits([a(x), b(x)], 4.0)
        want = (torch.softmax(a(x) / 4, 1) + torch.softmax(b(x) / 4, 1)) / 2
        assert torch.allclose(torch.softmax(soft / 4, 1), want, atol=1e-6)
    ml = Task("multilabel", ("x", "y", "z"))
    with torch.no_grad():
        soft = ml.ensemble_soft_logits([a(x), b(x)], 2.0)
        want = (torch.sigmoid(a(x) / 2) + torch.sigmoid(b(x) / 2)) / 2
        assert torch.allclose(torch.sigmoid(soft / 2), want, atol=1e-5)


def test_pretrained_without_local_weights_says_where(tmp_path, monkeypatch):
    from bench.modelling.architectures import build

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ValueError, match=r"not found at .*checkpoints.*downloads nothing"):
        build("resnet18", 2, pretrained=True)


def test_timm_or_unknown_architecture_is_one_line():
    from bench.modelling.architectures import check_architecture

    with pytest.raises(ValueError, match="nosuchnet"):
        check_architecture("resnet18+nosuchnet", "--teacher")
    with pytest.raises(ValueError, match="timm"):
        try:
            import timm  # noqa: F401
        except ImportError:
            check_architecture("timm:resnetv2_50", "--teacher")
        else:
            check_architecture("timm:no_such_model_x", "--teacher")


def test_pretrained_loads_local_imagenet_weights_and_swaps_the_head(tmp_path, monkeypatch):
    """The success path without a download: a weights file placed where torch's hub cache is."""
    import os

    from torchvision import models

    from bench.modelling.architectures import build

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = models.get_model_weights("resnet18").DEFAULT.url
    os.makedirs(tmp_path / "checkpoints")
    torch.manual_seed(7)
    imagenet = models.resnet18(num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "checkpoints" / os.path.basename(url))
    m = build("resnet18", 3, pretrained=True)
    assert torch.equal(m.conv1.weight, imagenet.conv1.weight)
    assert m.fc.out_features == 3
