"""bench.config.settings: the layering order (defaults < preset < profile < command line) and
every bad input refused by `validate`, in one line, before anything is trained."""

import time

import pytest

from bench.child.timed_loop import LatencyPlan
from bench.cli import _parser, main
from bench.config import presets, settings
from bench.config.sections import RunConfig
from bench.data import SyntheticSizes


def _args(*argv):
    return _parser().parse_args(["run", *argv])


def _build(*argv):
    return settings.build(_args(*argv))


@pytest.fixture
def layered(monkeypatch):
    """A preset that sets what the profiles and the command line also set."""
    preset = presets.Preset(name="layers", summary="test", settings={
        "data.image_size": 100, "measurement.n_boot": 1000, "measurement.repeats": 2,
        "training.student_epochs": 3.0, "training.teacher_epochs": 5.0,
        "measurement.retime_budget_s": 7.0, "seeds": [4, 5], "seed": 4})
    monkeypatch.setattr(presets, "get", lambda name: preset)
    return preset


def test_defaults_are_the_dataclasses():
    cfg = _build()
    d = RunConfig()
    assert cfg.data == d.data and cfg.training == d.training and cfg.methods == d.methods
    assert cfg.profile is None and cfg.preset is None and cfg.seeds == [] and cfg.device == "cpu"
    assert cfg.measurement.latency == d.measurement.latency and cfg.output.use_cache


def test_preset_beaten_by_profile_beaten_by_command_line(layered):
    pre = _build("--preset", "layers")
    assert pre.data.image_size == 100 and pre.measurement.n_boot == 1000
    assert pre.seeds == [4, 5] and pre.training.student_epochs == 3.0
    quick = _build("--preset", "layers", "--quick")
    assert quick.data.image_size == 32 and quick.measurement.n_boot == 200
    assert quick.training.student_epochs == 1.0 and quick.training.teacher_epochs == 1.0
    assert quick.seeds == [] and quick.seed == 4  # the preset's first seed only
    assert quick.measurement.retime_budget_s == 0.0 and quick.profile == "quick"
    cli = _build("--preset", "layers", "--quick", "--image-size", "48", "--bootstrap", "50",
                 "--student-epochs", "2", "--seeds", "7,8", "--retime-budget", "9")
    assert cli.data.image_size == 48 and cli.measurement.n_boot == 50
    assert cli.training.student_epochs == 2.0 and cli.seeds == [7, 8]
    assert cli.measurement.retime_budget_s == 9.0


def test_profiles_read_the_layers_below(layered):
    small = _build("--quick", "--finetune-epochs", "0.05")
    assert small.training.finetune_epochs == 0.05
    assert _build("--quick").training.finetune_epochs == 0.1  # min(0.2, 0.1)
    rig = _build("--preset", "layers", "--rigorous")
    assert rig.measurement.repeats == 5 and rig.measurement.retime_budget_s == 600.0
    assert rig.measurement.max_repeats == 10 and rig.measurement.latency == settings.RIGOROUS_PLAN
    assert rig.data.image_size == 100 and rig.seeds == [4, 5]  # rigorous keeps every seed
    assert _build("--rigorous", "--repeats", "8", "--retime-budget", "1000").measurement.repeats == 8


def test_quick_profile_values_are_the_old_ones():
    q = _build("--quick")
    assert q.quick and not q.rigorous
    assert q.measurement.shared_process is True and q.data.image_size == 32
    assert q.data.sizes == SyntheticSizes(train=256, val=64, test=128, calibration=32,
                                          transfer=512)
    assert (q.training.teacher_epochs, q.training.student_epochs,
            q.training.finetune_epochs) == (1.0, 1.0, 0.1)
    assert q.measurement.latency == LatencyPlan(warmup_n=3, warmup_s=0.05, min_n=20, min_s=0.1,
                                                max_s=2.0)
    assert q.measurement.retime_budget_s == 0 and q.measurement.n_boot == 200
    assert settings.RIGOROUS_PLAN == LatencyPlan(warmup_n=10, warmup_s=2.0, min_n=200,
                                                 min_s=10.0, max_s=60.0)


def test_quick_chexpert_keeps_32_px_and_one_seed_and_image_size_beats_all():
    q = _build("--preset", "chexpert-kd", "--quick")
    assert q.data.image_size == 32 and q.seeds == [] and q.seed == 0
    given = _build("--preset", "chexpert-kd", "--quick", "--image-size", "80")
    assert given.data.image_size == 80
    assert _build("--preset", "chexpert-kd", "--image-size", "80").data.image_size == 80
    assert _build("--preset", "chexpert-kd", "--seeds", "3").seeds == [3]
    one = _build("--preset", "chexpert-kd", "--seed", "9")
    assert one.seed == 9 and one.seeds == []  # --seed asks for one run: the preset's seeds go


def test_command_line_maps_every_option():
    cfg = _build("--methods", "kd", "--labels", "a, b", "--teachers", "resnet18,vgg11",
                 "--backends", "torch", "--precision", "fp32,bf16", "--no-cache",
                 "--threads", "3", "--train-threads", "2", "--margin", "0.1",
                 "--operating-point", "spec=0.9", "--task", "multiclass", "--out", "x",
                 "--pretrained", "--frontal-only", "--uncertainty", "u-zeros")
    assert cfg.methods.spec == "kd" and cfg.data.labels == ["a", "b"]
    assert cfg.training.teachers == ["resnet18", "vgg11"] and cfg.training.pretrained
    assert cfg.measurement.backends == ["torch"] and cfg.measurement.precisions == ["bf16"]
    assert not cfg.output.use_cache and cfg.output.out == "x"
    assert (cfg.measurement.threads, cfg.training.train_threads) == (3, 2)
    assert cfg.measurement.margin == 0.1 and cfg.measurement.operating_point == "spec=0.9"
    assert cfg.data.task == "multiclass" and cfg.data.num_classes == 4  # the task's default
    assert cfg.data.frontal_only and cfg.data.uncertainty == "u-zeros"
    assert _build("--task", "multilabel").data.num_classes == 5


def test_a_layer_with_an_unknown_key_is_refused():
    with pytest.raises(ValueError, match="unknown setting 'data.imagesize'"):
        settings.apply(RunConfig(), {"data.imagesize": 3}, "preset 'x'")
    assert {"seed", "seeds", "device", "data.image_size", "measurement.latency"} <= settings.KEYS
    assert "preset" not in settings.KEYS and "data" not in settings.KEYS


BAD = [
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--train-threads", "0"], "--train-threads 0: must be at least 1"),
    (["--repeats", "0"], "--repeats 0: must be at least 1"),
    (["--rigorous", "--repeats", "3"], "--repeats 3: must be at least 5"),
    (["--rigorous", "--quick"], "--rigorous and --quick contradict each other"),
    (["--bootstrap", "-1"], "--bootstrap -1: must be 0 (no intervals) or more"),
    (["--margin", "1"], "--margin 1.0: must be in [0, 1)"),
    (["--margin", "-0.1"], "--margin -0.1: must be in [0, 1)"),
    (["--retime-budget", "-1"], "--retime-budget -1.0: must be 0 (off) or more"),
    (["--teacher-epochs", "-1"], "--teacher-epochs -1.0: must be 0 or more"),
    (["--seeds", "0,x"], "--seeds '0,x': expected comma-separated integers"),
    (["--seeds", "0,,1"], "expected comma-separated integers"),
    (["--seeds", "1,2,1"], "--seeds '1,2,1': a seed is repeated"),
    (["--dataset", "folder:/nowhere", "--task", "multiclass"],
     "--task and --num-classes shape the synthetic dataset"),
    (["--dataset", "folder:/nowhere", "--num-classes", "3"],
     "folder:/nowhere defines its own task and classes"),
    (["--labels", "a,,b"], "--labels 'a,,b': empty name in the list"),
    (["--operating-point", "spec=2"], "bad operating point 'spec=2'"),
    (["--methods", "kd,bogus"], "unknown method 'bogus'"),
    (["--teacher", "resnet999"], "unknown --teacher 'resnet999'"),
    (["--teachers", "resnet18,nope"], "unknown --teachers 'nope'"),
    (["--student", "mobilenet_v9"], "unknown --student 'mobilenet_v9'"),
    (["--teacher-checkpoint", "/nowhere/t.pt"], "/nowhere/t.pt: teacher checkpoint not found"),
    (["--backends", "tensorrt"], "unknown backend 'tensorrt'"),
    (["--precision", "int4"], "unknown precision 'int4'"),
    (["--dataset", "nope"], "--dataset 'nope': unknown dataset"),
    (["--task", "multiclass", "--num-classes", "1"], "needs at least 2 classes"),
    (["--image-size", "8"], "--image-size 8: the generator needs at least 16 pixels"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_validate_rejects_bad_input_in_one_line(argv, message):
    cfg = _build(*argv)
    with pytest.raises(ValueError) as err:
        settings.validate(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_teachers_with_a_checkpoint_and_an_uninstalled_backend(tmp_path, monkeypatch):
    ckpt = tmp_path / "t.pt"
    ckpt.write_bytes(b"")
    cfg = _build("--teachers", "resnet18", "--teacher-checkpoint", str(ckpt))
    with pytest.raises(ValueError, match="--teachers and --teacher-checkpoint: choose one"):
        settings.validate(cfg)
    from bench import backends

    monkeypatch.setattr(backends, "installed", lambda: ["torch"])
    cfg = _build("--backends", "torch,openvino")
    with pytest.raises(ValueError, match="backend 'openvino' is not installed here"):
        settings.validate(cfg)


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda: torch sees no CUDA device"):
        settings.validate(_build("--device", "cuda"))


@pytest.mark.alone  # timed
def test_good_input_passes_fast():
    settings.validate(_build("--quick"))  # warm the imports (torchvision's model list)
    start = time.perf_counter()
    settings.validate(_build("--quick", "--methods", "kd+prune.structured:ratio=0.3",
                             "--seeds", "0,1", "--operating-point", "sens=0.8"))
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("argv,message", BAD[:4] + BAD[-6:], ids=lambda v: str(v)[:40])
def test_cli_exits_2_with_one_line_and_trains_nothing(argv, message, capsys, monkeypatch):
    import bench.pipeline.runner

    def trained(cfg):
        raise AssertionError("the run started")

    monkeypatch.setattr(bench.pipeline.runner, "run", trained)
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
