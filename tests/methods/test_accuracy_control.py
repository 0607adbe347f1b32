"""quant.static:max_drop: the sensitive layers go back to float until the validation AUC
drop is at most max_drop, on every backend that has the rule, without the test labels.

The model is one where int8 is broken by a single layer, by construction (`sensitive`),
and the validation labels are its own float ranking, so float AUC is 1 and any damage
shows.
"""

import numpy as np
import pytest
import torch

import methods
from bench import backends
from bench.backends import ExportEnv
from bench.modelling.training import predict_logits
from tests.helpers import TinyNet

SIZE = 16


@pytest.fixture(scope="module")
def data():
    from bench.data import SyntheticSizes
    from bench.data.generated import synthetic_bundle

    return synthetic_bundle(SIZE, 0, "binary", 2, SyntheticSizes(train=32, val=96, test=32,
                                                                 calibration=32))


def sensitive(images: np.ndarray) -> TinyNet:
    """TinyNet whose int8 only features.3 breaks: channel 0 of the first block is dead
    (BatchNorm weight 0.01, bias -10: ReLU gives 0), and features.3 weighs that channel
    1000, so each output channel's int8 weight scale is set by the outlier and its real
    weights round to 0. The classifier reads the first principal component of the pooled
    features, so the logits spread by about 3 across images."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():
        net.features[1].weight[0], net.features[1].bias[0] = 0.01, -10.0
        net.features[3].weight[:, 0] = 1000.0
        feats = net.features(torch.from_numpy(images).expand(-1, 3, -1, -1)).numpy()
        centred = feats - feats.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        w = vt[0] * 3 / (s[0] / np.sqrt(len(feats)))
        net.classifier.weight.zero_()
        net.classifier.bias.zero_()
        net.classifier.weight[1] = torch.from_numpy(w)
        net.classifier.bias[1] = -float(feats.mean(0) @ w)
    return net


def own_ranking(net, images) -> np.ndarray:
    """Labels the float model ranks perfectly: its positive score above the median."""
    score = torch.softmax(predict_logits(net, images), 1)[:, 1].numpy()
    return (score > np.median(score)).astype(np.int64)


@pytest.fixture(scope="module")
def setup(data):
    net = sensitive(data.val.images)
    ctx = methods.Context(
        task=data.task, train_images=data.train.images, train_labels=data.train.labels,
        calibration_images=data.calibration, teacher=net,
        teacher_logits=predict_logits(net, data.train.images), student_arch="tiny",
        image_size=SIZE, student_epochs=0, finetune_epochs=0,
        val_images=data.val.images, val_labels=own_ranking(net, data.val.images))
    return net, ctx


def quant(spec, net, ctx):
    (chain,) = methods.expand(spec)
    parent = methods.Artifact(name="float", arch="tiny", module=net, float_module=net)
    return methods.get("quant.static")().apply(parent, ctx, **dict(chain[0].params))


def deployed_notes(art, backend, data, tmp_path) -> list[str]:
    env = ExportEnv(image_size=SIZE, calibration=data.calibration, work_dir=tmp_path / "work")
    out = tmp_path / backend / "model"
    out.mkdir(parents=True)
    return backends.deploy(backends.get(backend), art, out, env).notes


def accuracy_note(notes) -> str:
    (note,) = [n for n in notes if "accuracy control" in n]
    return note


def drop_of(note: str) -> float:
    return float(note.split("(drop ")[1].split()[0])


def test_plain_int8_breaks_and_the_default_is_unchanged(setup):
    from methods.quant.accuracy import OFF, Control

    net, ctx = setup
    art = quant("quant.static", net, ctx)
    control = Control.of(ctx, 0.01)
    x = torch.from_numpy(control.inputs())
    with torch.no_grad():
        assert control.auc(net(x).numpy()) == 1.0
        assert control.auc(art.module(x).numpy()) < 0.6  # int8 destroys it
    assert art.notes == ("FX post-training int8 (x86 qconfig, per-channel weights), calibrated "
                         "on 32 training images",)
    assert Control.of(ctx, OFF) is None
    assert all(getattr(a, "control", None) is None for a in art.realisations.values())


def test_torch_keeps_the_broken_layer_in_float(setup):
    net, ctx = setup
    art = quant("quant.static:max_drop=0.01", net, ctx)
    note = accuracy_note(art.notes)
    assert note.startswith("PyTorch FX accuracy control: validation AUC 1.000 float")
    assert "1 layer kept in float: features.3" in note and drop_of(note) <= 0.01
    assert art.precision == "int8" and "ConvReLU2d" in {type(m).__name__ for m in art.module.modules()}
    # the pt2e backends have no such rule: their rows say so rather than ignore max_drop
    assert "not executorch" in art.realisations["executorch"]


@pytest.mark.parametrize("backend, layer", [
    ("onnxruntime", "/features/features.3/Conv"),
    ("openvino", "/features/features.3/Conv/WithoutBiases"),
])
def test_backend_keeps_the_broken_layer_in_float(setup, data, tmp_path, backend, layer):
    net, ctx = setup
    plain = deployed_notes(quant("quant.static", net, ctx), backend, data, tmp_path / "plain")
    assert not any("accuracy control" in n for n in plain)
    note = accuracy_note(deployed_notes(quant("quant.static:max_drop=0.01", net, ctx), backend,
                                        data, tmp_path / "controlled"))
    assert note.startswith("accuracy control: validation AUC 1.000 float")
    assert drop_of(note) <= 0.01 and "kept in float: " in note
    assert layer in note.split("kept in float: ")[1].split(", ")
    # ONNX Runtime's own graph optimizer re-quantizes the weights of an excluded Conv
    # between a DequantizeLinear and a QuantizeLinear, so it may need features.0 as well


def test_test_labels_are_never_read(setup, data, tmp_path):
    """Through the bench's Builder with the test labels sealed: choosing reads none."""
    from dataclasses import replace

    from bench.config.sections import RunConfig
    from bench.modelling.teacher import Teacher
    from bench.pipeline.artifacts import Builder
    from bench.search.sealed import SealedLabels, seal

    net, ctx = setup
    sealed = seal(replace(data, val=replace(data.val, labels=ctx.val_labels)))
    cfg = RunConfig()
    cfg.data.image_size = SIZE
    teacher = Teacher(module=net, train_logits=ctx.teacher_logits, arch="tiny", source="trained",
                      info={})
    SealedLabels.reads = 0
    (chain,) = methods.expand("quant.static:max_drop=0.01,calibration_size=32")
    art = Builder(cfg, sealed, teacher).chain(chain)
    assert isinstance(art, methods.Artifact), art
    assert "features.3" in accuracy_note(art.notes)
    assert "accuracy control" in accuracy_note(deployed_notes(art, "onnxruntime", sealed, tmp_path))
    assert SealedLabels.reads == 0


def test_openvino_ranks_on_a_subset_when_the_split_is_small(tmp_path, monkeypatch):
    """A validation split of at most RANKING_SIZE (64) images: NNCF must still rank on a
    proper subset, or the validation function takes its ranking calls for the whole
    split's and answers them with AUCs (not the squared error it ranks by), each one
    added to the figures the note reads (`with every layer int8`)."""
    import nncf

    from bench.data import SyntheticSizes
    from bench.data.generated import synthetic_bundle
    from methods.quant.accuracy import RANKING_SIZE

    n = 48
    assert n <= RANKING_SIZE
    small = synthetic_bundle(SIZE, 0, "binary", 2, SyntheticSizes(train=32, val=n, test=32,
                                                                  calibration=32))
    net = sensitive(small.val.images)
    ctx = methods.Context(
        task=small.task, train_images=small.train.images, train_labels=small.train.labels,
        calibration_images=small.calibration, teacher=net,
        teacher_logits=predict_logits(net, small.train.images), student_arch="tiny",
        image_size=SIZE, student_epochs=0, finetune_epochs=0,
        val_images=small.val.images, val_labels=own_ranking(net, small.val.images))
    sizes: list[int] = []  # how many images each call of the validation function got
    real = nncf.quantize_with_accuracy_control

    def controlled(model, calibration, validation, validate, **kwargs):
        def counted(compiled, items):
            items = list(items)
            sizes.append(len(items))
            return validate(compiled, items)

        return real(model, calibration, validation, counted, **kwargs)

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", controlled)
    note = accuracy_note(deployed_notes(quant("quant.static:max_drop=0.01", net, ctx),
                                        "openvino", small, tmp_path))
    assert any(1 < size < n for size in sizes), sizes  # the ranking's subset
    assert sizes.count(n) <= 3, sizes  # float, all int8, after the revert: no ranking call
    assert ", 0.500 with every layer int8" in note and "features.3" in note, note


@pytest.mark.parametrize("value", ["1.5", "1", "-0.5", "nan", "inf"])
def test_a_bad_max_drop_is_a_one_line_error(value):
    with pytest.raises(ValueError) as err:
        methods.expand(f"quant.static:max_drop={value}")
    assert "max_drop" in str(err.value) and "\n" not in str(err.value)


def test_a_bad_max_drop_or_no_validation_split_fails_in_apply(setup):
    from dataclasses import replace

    net, ctx = setup
    parent = methods.Artifact(name="float", arch="tiny", module=net, float_module=net)
    step = methods.get("quant.static")()
    with pytest.raises(ValueError, match="max_drop"):
        step.apply(parent, ctx, calibration_size=32, max_drop=float("nan"))
    with pytest.raises(ValueError, match="validation split"):
        step.apply(parent, replace(ctx, val_images=None), calibration_size=32, max_drop=0.01)
