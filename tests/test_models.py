import gzip
import pickle

import pytest
import torch

from bench.models import build, count_macs, count_params, load_checkpoint, state_bytes
from tests.conftest import TinyNet


def test_param_counts_match_torch():
    m = TinyNet()
    total, nonzero = count_params(m)
    assert total == sum(p.numel() for p in m.parameters()) + sum(
        b.numel() for n, b in m.named_buffers() if "running" in n)
    with torch.no_grad():
        m.classifier.weight.zero_()
    assert count_params(m)[1] == nonzero - m.classifier.weight.numel()


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
