"""Random command lines against the parser and the configuration layer.

Why: bad input must cost one line on stderr and exit 2, before any training (README,
"Bad input ... exits 2 with one line"; docs/architecture.md: the cli owns "2: bad input,
one line"). A traceback, a hang or a value waved through to fail minutes later inside
training breaks that promise, and hand-written cases only cover the inputs someone
thought of. The property, for every generated argv:

    bench.cli.main(argv) returns 0 or 2, and with 2 stderr is exactly one line that
    starts with "error: "; with 0 for `run`, the configuration reached the runner, and
    its numbers are ones training can use (finite, seeds numpy takes: `assert_sane`).

argparse's own usage errors count as bad input like any other: `bench.cli` turns them
into the same one line and exit 2 (`error: <message> (see `... --help`)`), rather than
argparse's usage block and SystemExit(2). `--help` alone may leave through SystemExit(0)
with the usage on stdout, as argparse does.

`bench.pipeline.runner.run` is replaced by a stub that records the configuration and returns 0:
`bench.config.settings.build` + `validate` are exercised, nothing is trained or measured. The
examples are derandomized and use no database, so CI sees the same cases every run.
The regression tests after the properties pin each crash the fuzzing found, with the
input that triggered it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bench.cli import main  # noqa: E402

#: unset (CI, the fast suite): derandomized, no example database, the same examples on
#: every machine and run. MEDBENCH_FUZZ_EXAMPLES=5000: a longer hunt with random seeds.
HUNT = int(os.environ.get("MEDBENCH_FUZZ_EXAMPLES") or 0)
FUZZ = settings(max_examples=HUNT or 300, deadline=None, derandomize=not HUNT, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

METHOD_NAMES = ["kd", "prune", "quant", "prune.magnitude", "prune.structured",
                "quant.dynamic", "quant.static", "student"]
PARAM_KEYS = ["temperature", "alpha", "epochs", "lr", "unlabelled", "sparsity",
              "finetune_epochs", "ratio", "round_to", "calibration_size"]
WEIRD_VALUES = ["", "nan", "NaN", "-nan", "inf", "-inf", "1e999", "-1e999", "1e-400", "-1",
                "0", "-0", "0.5", "1", "2", "8", "128", "9" * 30, "9" * 5000, "1_000",
                "0x10", "\u0661", "\uff12", "\u00bd", "true", "half", " 3 ", "=", ":", "+",
                ",", "--quick", "-"]
#: paths relative to the sandbox the tests run in (see `sandbox`), plus ones the OS refuses
PATHS = ["empty", "file.txt", "missing", "sub", "sub/train.csv", "data.npz", "broken-run",
         "list-run", "future-run", "baseline.json", "loop", ".", "..", "/", "/dev/null",
         "a" * 300, "x/" * 2100, "~medbench-no-such-user/x", "~", "a\nb", "a\rb",
         "caf\u00e9", "\udcff", "\x00", "", " ", "-", "--", "*", "${HOME}"]
NUMBER_TOKENS = ["nan", "inf", "-inf", "1e999", "", "0", "-0", "1", "2", "16", "31", "1.5",
                 "-1", "x", "\u0663", "1_0", "0x1f", " 4 ", "--quick", "-5", "1e3",
                 "99999999999", "9" * 40, "9" * 5000]


def text(max_size=8):
    return st.text(max_size=max_size)


def number():
    """What a user might type for a numeric option: ints, floats, junk, huge, NaN."""
    plausible = st.integers(-2, 64).map(str)
    return st.one_of(plausible, plausible, st.sampled_from(NUMBER_TOKENS),
                     st.integers(-10**30, 10**30).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     text(4))


def joined(element, seps=(",", ", ", ",,", " , ", ";", "")):
    return st.builds(lambda items, sep: sep.join(items), st.lists(element, max_size=4),
                     st.sampled_from(seps))


def own_params(name: str) -> list[str]:
    """The parameter names `name` (a method or a family) takes: keys that parse, so the
    values are what is tested."""
    import methods

    members = methods.families().get(name, [name])
    return sorted({p.name for m in members if m in methods.all_methods()
                   for p in methods.get(m).params})


def often(draw, likely, rarely, odds=4):
    """Draw from `likely` `odds` times in `odds + 1`, else from `rarely`: specs that are
    nearly right reach the value checks behind the name checks, junk stays in the mix."""
    return draw(likely if draw(st.integers(0, odds)) else rarely)


@st.composite
def method_step(draw):
    name = often(draw, st.sampled_from(METHOD_NAMES), st.one_of(st.sampled_from(
        ["", "bogus", "KD", "prune.", ".static", "quant.static.x", "kd ", " kd"]), text(6)))
    keys = own_params(name.strip())
    if not keys or draw(st.integers(0, 3)) == 0:
        return name
    pairs = []
    for _ in range(draw(st.integers(1, 3))):
        key = often(draw, st.sampled_from(keys), st.one_of(
            st.sampled_from(PARAM_KEYS + ["", "x", " alpha", "a lpha"]), text(5)))
        value = often(draw, st.one_of(st.sampled_from(WEIRD_VALUES), number()), text(5), 6)
        form = often(draw, st.just("{k}={v}"), st.sampled_from(["{k}", "{k}=={v}", "{k}:{v}"]),
                     6)
        pairs.append(form.format(k=key, v=value))
    return name + often(draw, st.just(":"), st.sampled_from(["::", ": "])) + often(
        draw, st.just(","), st.sampled_from([",,", ", "])).join(pairs)


@st.composite
def methods_spec(draw):
    """Known and unknown names, families, `+` chains, parameters good and bad."""
    if draw(st.integers(0, 9)) == 0:
        return draw(text(20))
    items = []
    for _ in range(draw(st.integers(1, 3))):
        steps = draw(st.lists(method_step(), min_size=1, max_size=3))
        items.append(often(draw, st.just("+"), st.sampled_from(["++", " + "])).join(steps))
    return often(draw, st.just(","), st.sampled_from([",,", ", ", "+"])).join(items)


def path():
    return st.one_of(st.sampled_from(PATHS), text(10))


@st.composite
def dataset_spec(draw):
    """`synthetic`, card names, FORMAT:PATH with existing, missing and odd paths."""
    from bench.data import cards

    names = sorted(cards.all_cards())
    fmt = draw(st.sampled_from(["folder", "medmnist", "chexpert", "ham10000", "png", "zip",
                                "synthetic", "Folder", "http", ""]))
    return draw(st.one_of(
        st.sampled_from(["synthetic", "", ":", "synthetic:", "synthetic:x", "SYNTHETIC",
                         "folder:", "folder::", "folder:empty:x"]),
        st.sampled_from(names), st.sampled_from(names).map(str.upper),
        path().map(lambda p: f"{fmt}:{p}"), text(12)))


def option(flag, values):
    """`--flag value` or `--flag=value`."""
    return st.builds(lambda v, eq: [f"{flag}={v}"] if eq else [flag, v], values,
                     st.booleans())


RUN_OPTIONS = st.one_of(
    option("--methods", methods_spec()),
    option("--dataset", dataset_spec()),
    option("--data-root", path()),
    *(option(flag, number()) for flag in (
        "--threads", "--train-threads", "--repeats", "--bootstrap", "--margin",
        "--retime-budget", "--image-size", "--teacher-epochs", "--student-epochs",
        "--finetune-epochs", "--num-classes", "--seed")),
    option("--seeds", joined(number())),
    option("--task", st.sampled_from(["binary", "multiclass", "multilabel", "regression", ""])),
    option("--labels", joined(st.one_of(st.sampled_from(
        ["Edema", "Cardiomegaly", "normal", "mel", "", " "]), text(5)))),
    option("--operating-point", st.one_of(st.sampled_from(
        ["0.5", "threshold=0.3", "spec=0.9", "sens=0.9", "spec=", "=0.5", "spec=1.5",
         "sens=-0", "threshold=nan", "a=b=0.5", "SPEC=0.9", "spec=inf", " sens = 0.9 ", ""]),
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["spec", "sens", "threshold", ""]),
                  number()), text(8))),
    option("--precision", joined(st.sampled_from(["bf16", "fp16", "fp32", "int8", "", "FP16"]))),
    option("--backends", joined(st.sampled_from(
        ["torch", "onnxruntime", "openvino", "tensorrt", "", "Torch"]))),
    option("--device", st.sampled_from(["cpu", "cuda", "gpu", "", "cuda:0"])),
    option("--uncertainty", st.sampled_from(["u-ones", "u-zeros", "u-ignore", "u-maybe"])),
    option("--preset", st.one_of(st.sampled_from(
        ["ci", "chexpert-kd", "covid-malaria", "skin-lesion", "covid-ensemble", "", "CI",
         "nope"]), text(6))),
    option("--teacher", st.sampled_from(
        ["densenet121", "resnet18", "resnet50+vgg19", "timm:resnet18", "", "+", "bogus",
         "resnet18+", "a" * 300])),
    option("--student", st.sampled_from(["mobilenet_v2", "mobilenet_v3_small", "", "x"])),
    option("--teachers", joined(st.sampled_from(["resnet18", "densenet121", "", "x"]))),
    option("--teacher-checkpoint", path()),
    option("--out", path()),
    st.sampled_from([["--quick"], ["--rigorous"], ["--frontal-only"], ["--pretrained"],
                     ["--no-cache"]]),
)


def run_argv():
    return st.lists(RUN_OPTIONS, max_size=6).map(
        lambda groups: ["run", *(token for group in groups for token in group)])


def command_argv(command, tokens):
    """A subcommand followed by a random mix of its own options, paths and junk."""
    return st.lists(st.one_of(st.sampled_from(tokens), path(), number(), text(6)),
                    max_size=6).map(lambda rest: [command, *rest])


OTHER_ARGV = st.one_of(
    command_argv("check", ["--baseline", "--update", "--speedup-tolerance", "--auc-margin",
                           "baseline.json", "broken-run", "empty"]),
    command_argv("report", ["broken-run", "list-run", "future-run", "empty", "file.txt"]),
    command_argv("compare", ["--bootstrap", "broken-run", "future-run", "empty", "-1"]),
    command_argv("list", ["--archs", "--arch", "-a"]),
    st.lists(st.one_of(st.sampled_from(["run", "check", "report", "compare", "list", "-h",
                                        "--help", "--", "-"]), text(8)), max_size=5),
)


class Runner:
    """Stands in for bench.pipeline.runner.run: records what it was given, never trains."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, connect=None):
        from bench.config.sections import RunConfig

        assert isinstance(cfg, RunConfig)
        self.calls.append(cfg)
        return 0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder of existing, missing and broken things for paths to point at, as the
    working directory, with the runner stubbed. Module-scoped: hypothesis runs many
    examples per test, which must all see the same files (nothing here writes any)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "empty").mkdir()
    (root / "file.txt").write_text("x")
    (root / "data.npz").write_bytes(b"not a zip")
    (root / "sub").mkdir()
    (root / "sub" / "train.csv").write_text("Path,Sex\n")
    (root / "broken-run").mkdir()
    (root / "broken-run" / "results.json").write_text("{not json")
    (root / "list-run").mkdir()
    (root / "list-run" / "results.json").write_text("[1, 2]")
    (root / "future-run").mkdir()
    (root / "future-run" / "results.json").write_text(
        json.dumps({"schema_version": 99, "rows": []}))
    (root / "baseline.json").write_text(json.dumps({"baseline_version": 1, "rows": []}))
    os.symlink("loop", root / "loop")
    runner = Runner()
    before = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("bench.pipeline.runner.run", runner)
        os.chdir(root)
        try:
            # first calls import torch, torchvision and the registries (their one-time
            # warnings, if any, are not what the property is about)
            for argv in (["run"], ["run", "--device", "cuda"], ["list"]):
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    main(argv)
            yield runner
        finally:
            os.chdir(before)


def outcome(argv):
    """(exit code, stdout, stderr) of main(argv); an exception other than --help's
    SystemExit(0) propagates, and hypothesis reports it with the argv."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"SystemExit({exc.code!r}) for {argv!r}"
            assert out.getvalue().startswith("usage:"), "SystemExit(0) other than --help"
            return "help", out.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


def assert_clean(argv, runner):
    calls = len(runner.calls)
    code, _out, err = outcome(argv)
    assert "Traceback" not in err
    if code == "help":
        return
    assert code in (0, 2), f"exit {code!r} for {argv!r}: {err!r}"
    if code == 2:
        assert err.startswith("error: ") and err.endswith("\n"), repr(err)
        assert len(err.splitlines()) == 1, f"more than one line for {argv!r}: {err!r}"
        assert len(runner.calls) == calls, "the runner was reached with bad input"
    elif argv and argv[0] == "run":
        assert err == "", repr(err)
        assert len(runner.calls) == calls + 1, "exit 0 without reaching the runner"
        assert_sane(runner.calls[-1])


def assert_sane(cfg):
    """What validate promises the runner: exit 0 with a NaN epoch count or parameter, or a
    seed numpy refuses, would only fail later, inside training."""
    import math

    import methods
    from bench.config.checks import MAX_SEED, MAX_THREADS

    t, m = cfg.training, cfg.measurement
    for value in (t.teacher_epochs, t.student_epochs, t.finetune_epochs, m.margin,
                  m.retime_budget_s):
        assert math.isfinite(value) and value >= 0, value
    assert 1 <= m.threads <= MAX_THREADS and 1 <= t.train_threads <= MAX_THREADS
    assert all(0 <= seed <= MAX_SEED for seed in [cfg.seed, *cfg.seeds])
    for chain in methods.expand(cfg.methods.spec):
        for step in chain:
            assert all(math.isfinite(v) for _, v in step.params if isinstance(v, float)), step


@FUZZ
@given(argv=run_argv())
def test_random_run_options_exit_0_or_one_line(sandbox, argv):
    assert_clean(argv, sandbox)


@settings(FUZZ, max_examples=HUNT or 400)
@given(spec=methods_spec(), quick=st.booleans())
def test_random_methods_specs_exit_0_or_one_line(sandbox, spec, quick):
    assert_clean(["run", "--methods", spec, *(["--quick"] if quick else [])], sandbox)


@FUZZ
@given(spec=dataset_spec(), root=st.none() | path(), extra=st.lists(st.sampled_from(
    [["--task", "multiclass"], ["--num-classes", "3"], ["--labels", "a,b"],
     ["--frontal-only"], ["--uncertainty", "u-zeros"], ["--image-size", "8"]]), max_size=2))
def test_random_dataset_specs_exit_0_or_one_line(sandbox, spec, root, extra):
    argv = ["run", "--dataset", spec, *(["--data-root", root] if root is not None else [])]
    assert_clean(argv + [t for group in extra for t in group], sandbox)


@FUZZ
@given(argv=OTHER_ARGV)
def test_random_other_commands_exit_0_or_one_line(sandbox, argv):
    assert_clean(argv, sandbox)


# ------------------------------------------------------------- regressions, one per crash


def _never(cfg):
    raise AssertionError("bench.pipeline.runner.run reached with bad input")


def one_error(capsys, argv, monkeypatch) -> str:
    """Run main(argv) expecting exit 2; return its single stderr line."""
    monkeypatch.setattr("bench.pipeline.runner.run", _never)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(err)
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["run", "--threads", "x"], "argument --threads: invalid int value: 'x' (see `python -m "
                                "bench run --help`)"),
    (["list", "x"], "unrecognized arguments: x"),
    (["bogus"], "argument command: invalid choice: 'bogus'"),
    (["run", "bogus", "a\nb"], "unrecognized arguments: bogus a\\nb"),
])
def test_argparse_errors_are_one_line_exit_2(capsys, monkeypatch, argv, expected):
    # was: argparse's usage block and "python -m bench: error: ..." and SystemExit(2)
    assert expected in one_error(capsys, argv, monkeypatch)


def test_help_still_exits_0_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "--help"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_method_parameter(capsys, monkeypatch, value):
    # was: exit 0, a NaN or infinite temperature handed on to training
    line = one_error(capsys, ["run", "--methods", f"kd:temperature={value}"], monkeypatch)
    assert line == f"error: parameter temperature: {value!r} is not a finite number"


def test_nameless_and_repeated_method_parameters(capsys, monkeypatch):
    # was: "kd has no parameter ''", and alpha=1 silently dropped for alpha=2
    assert one_error(capsys, ["run", "--methods", "kd:=3"], monkeypatch) == (
        "error: 'kd:=3': parameter '=3' has no name (write key=value)")
    assert one_error(capsys, ["run", "--methods", "kd:alpha=1,alpha=2"], monkeypatch) == (
        "error: 'kd:alpha=1,alpha=2': parameter 'alpha' is given twice")


def test_a_5000_digit_parameter_is_quoted_short(capsys, monkeypatch):
    # was: the whole 5000-digit value repeated in the error line
    line = one_error(capsys, ["run", "--methods", "prune.structured:round_to=" + "9" * 5000],
                     monkeypatch)
    assert "is not an int" in line and "(5000 characters)" in line and len(line) < 150
    line = one_error(capsys, ["run", "--methods", "kd:unlabelled=" + "9" * 5000], monkeypatch)
    assert "is not a bool" in line and "(5000 characters)" in line and len(line) < 150


def test_param_parse_rejects_non_finite_and_odd_bools():
    from methods.base import Param

    with pytest.raises(ValueError, match="not a finite number"):
        Param("ratio", float, 0.5, "").parse("nan")
    flag = Param("on", bool, False, "")
    assert flag.parse(" Yes ") is True and flag.parse("0") is False
    with pytest.raises(ValueError, match="is not a bool"):
        flag.parse("maybe")  # was: False


@pytest.mark.parametrize("argv, expected", [
    (["--teacher-epochs", "nan"], "--teacher-epochs nan: must be a finite number"),
    (["--student-epochs", "inf"], "--student-epochs inf: must be a finite number"),
    (["--retime-budget", "nan"], "--retime-budget nan: must be a finite number of seconds"),
    (["--retime-budget", "1e999"], "--retime-budget inf: must be a finite number of seconds"),
])
def test_non_finite_float_options(capsys, monkeypatch, argv, expected):
    # was: exit 0 (NaN passes `< 0`; inf epochs never end)
    assert expected in one_error(capsys, ["run", *argv], monkeypatch)


def test_a_huge_class_count_fails_fast():
    # was: `--task multiclass --num-classes 100000000000` built 10^11 class names inside
    # validate (minutes, then out of memory); 10^6 is enough to show the check, and cheap
    # even if it regresses
    from bench.config.sections import DataConfig
    from bench.data import check

    with pytest.raises(ValueError, match="--num-classes 1000000: the generated multiclass "
                                         "data has at most 500"):
        check(DataConfig(task="multiclass", num_classes=10**6))


def test_num_classes_with_a_binary_task(capsys, monkeypatch):
    # was: exit 0, --num-classes 3 silently ignored by the binary generator
    assert "a binary task has 2 classes" in one_error(
        capsys, ["run", "--num-classes", "3"], monkeypatch)


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--seeds", "0,-1"],
                                  ["--seeds", "99999999999999999999999"]])
def test_seeds_out_of_range(capsys, monkeypatch, argv):
    # was: exit 0; numpy refuses a negative seed, torch and scikit-learn one past 2**32
    assert "must be in [0, 2147483647]" in one_error(capsys, ["run", *argv], monkeypatch)


def test_thread_counts_have_a_ceiling(capsys, monkeypatch):
    # was: exit 0; torch.set_num_threads takes a C int
    assert one_error(capsys, ["run", "--threads", "99999999999"], monkeypatch) == (
        "error: --threads 99999999999: must be at most 1024")


def test_unknown_home_directory(capsys, monkeypatch):
    # was: RuntimeError("Could not determine home directory.") with a traceback
    line = one_error(capsys, ["run", "--dataset", "folder:~medbench-no-such-user/x"],
                     monkeypatch)
    assert "cannot expand '~'" in line
    line = one_error(capsys, ["run", "--dataset", "ham10000", "--data-root",
                              "~medbench-no-such-user"], monkeypatch)
    assert line.startswith("error: --data-root '~medbench-no-such-user': cannot expand")


@pytest.mark.parametrize("argv", [
    ["--dataset", "folder:" + "a" * 300],
    ["--dataset", "ham10000", "--data-root", "a" * 300],
    ["--teacher-checkpoint", "a" * 300],
])
def test_a_name_too_long_for_the_os(capsys, monkeypatch, argv):
    # was: OSError [Errno 36] File name too long, with a traceback
    assert "cannot be read (File name too long)" in one_error(capsys, ["run", *argv],
                                                                 monkeypatch)


def test_a_newline_in_the_dataset_stays_on_one_line(capsys, monkeypatch):
    # was: the --task check (and --data-root's "not found") printed the path as given:
    # two lines on stderr. The cli escapes line breaks in every message it prints.
    line = one_error(capsys, ["run", "--dataset", "folder:a\nb", "--task", "multiclass"],
                     monkeypatch)
    assert "folder:a\\nb defines its own task" in line
    line = one_error(capsys, ["run", "--dataset", "bloodmnist", "--data-root", "a\rb"],
                     monkeypatch)
    assert line.startswith("error: a\\rb: --data-root not found")


def test_an_empty_preset_name_is_unknown(capsys, monkeypatch):
    # was: exit 0, `--preset ''` read as no preset
    assert "--preset '': unknown preset" in one_error(capsys, ["run", "--preset", ""],
                                                      monkeypatch)


def test_a_baseline_that_is_a_json_list(capsys, monkeypatch, tmp_path):
    # found by the fuzzing (an AttributeError traceback): bench.results.baseline.load_baseline refuses
    # it as it refuses a wrong baseline_version
    baseline = tmp_path / "b.json"
    baseline.write_text("[1, 2]")
    assert "not a medbench baseline" in one_error(
        capsys, ["check", str(tmp_path), "--baseline", str(baseline)], monkeypatch)


def test_check_report_compare_paths(capsys, monkeypatch, tmp_path):
    # was: IsADirectoryError (a folder as --baseline) and NotADirectoryError (a file as the
    # run directory) with tracebacks
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps({"baseline_version": 1, "rows": []}))
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cases = [
        (["check", str(tmp_path), "--baseline", str(tmp_path)], "baseline is a folder"),
        (["check", str(tmp_path), "--baseline", str(tmp_path), "--update"],
         "baseline is a folder"),
        (["check", str(a_file), "--baseline", str(baseline)], "run directory is not a folder"),
        (["report", str(a_file)], "run directory is not a folder"),
        (["compare", str(a_file), str(tmp_path)], "run directory is not a folder"),
        (["compare", str(tmp_path / "nope"), str(tmp_path)], "no such run directory"),
        (["check", str(tmp_path), "--baseline", str(baseline), "--auc-margin", "nan"],
         "--auc-margin nan: must be a finite number"),  # was: gating nothing, silently
    ]
    for argv, expected in cases:
        assert expected in one_error(capsys, argv, monkeypatch), argv
