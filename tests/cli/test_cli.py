import subprocess
import sys

import pytest

import methods
from bench.cli import main


def test_list_shows_every_method_and_parameter(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, cls in methods.all_methods().items():
        assert name in out
        for p in cls.params:
            assert p.name in out
    assert "prune = prune.magnitude + prune.structured" in out
    assert "torch" in out


def test_bad_methods_is_one_line_error(capsys):
    assert main(["run", "--methods", "kd,bogus", "--quick", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'bogus'" in err[0]


def test_bad_backend_is_one_line_error(capsys):
    assert main(["run", "--backends", "tensorrt", "--quick"]) == 2
    assert "unknown backend 'tensorrt'" in capsys.readouterr().err


def test_import_bench_imports_no_heavy_runtime():
    code = ("import sys, bench, bench.backends, bench.results.row, methods; "
            "bad = [m for m in ('onnxruntime', 'openvino', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unknown_student_fails_before_training(capsys, tmp_path):
    assert main(["run", "--student", "mobilenet_v9", "--quick", "--out", str(tmp_path / "r")]) == 2
    assert "unknown --student 'mobilenet_v9'" in capsys.readouterr().err


def test_missing_checkpoint_names_the_file(capsys, tmp_path):
    missing = tmp_path / "nope.pt"
    assert main(["run", "--teacher-checkpoint", str(missing), "--quick", "--out", str(tmp_path / "r")]) == 2
    assert f"{missing}: teacher checkpoint not found" in capsys.readouterr().err


def test_help_quotes_the_real_defaults(capsys):
    from bench.config.sections import RunConfig

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    t = RunConfig().training
    assert f"teacher training epochs (default {t.teacher_epochs:g}; --quick 1)" in out
    assert f"(default {t.student_epochs:g}; --quick at most 1)" in out
    assert "1.25" not in out


def test_list_shows_formats_cards_and_presets(capsys):
    from bench import data
    from bench.config import presets

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert data.spec_forms() in out
    for name in data.cards.all_cards():
        assert f"  {name} " in out
    for name, preset in presets.PRESETS.items().items():
        assert f"  {name}: {preset.summary}" in out


def test_cli_holds_no_layering_or_checks():
    import inspect

    from bench import cli

    source = inspect.getsource(cli._run)
    assert "settings.build" in source and "settings.validate" in source
    for leftover in ("quick_profile", "rigorous_profile", "parse_operating_point", "fill("):
        assert leftover not in inspect.getsource(cli)
