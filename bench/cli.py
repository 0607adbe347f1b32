"""Command line: `python -m bench run|search|check|report|compare|list`: the parser, the
dispatch (`run` here, `search` in bench.search.cli, the others in bench.commands) and the
exit codes.

Exit codes: 0; 1 (a row failed, or the gate found a regression); 2, bad input, with
exactly one `error: ...` line on stderr and no traceback: argparse's usage errors too,
and a message holding a line break (a path as typed) has it escaped; 130, interrupted.
tests/cli/test_fuzz_cli.py throws random command lines at this promise.
"""

from __future__ import annotations

import argparse
import errno
import sys

from bench import commands, execution
from bench.search.cli import add_options, run_search

#: characters str.splitlines() breaks at: an error message holding one (a path or a value
#: the user typed) is escaped, so bad input always costs exactly one line on stderr
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class UsageError(ValueError):
    """A command line argparse cannot parse: bad input like any other (exit 2, one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors print a usage block and exit through SystemExit; here they
    are one `error: ...` line and exit 2 like every other bad input, so a script or CI
    log reading stderr sees one shape of error (`--help` still prints the usage)."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def one_line(text: str) -> str:
    """`text` with its line breaks escaped (`\\n`), so it prints as one line."""
    return str(text).translate(_LINE_BREAKS)


def _parser() -> argparse.ArgumentParser:
    """Every option of `run` defaults to None (or False): `bench.config.settings.build` tells a
    given option from an unset one, so a preset or profile fills only the unset ones. The
    defaults quoted in the help are read from bench.config.sections and bench.config.settings."""
    p = _Parser(prog="python -m bench",
                description="Compress a medical image classifier every way and measure "
                            "every candidate alike.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train/load the teacher, apply methods, measure, report")
    _run_options(r)
    se = sub.add_parser("search", help="find the fastest or smallest chain that stays non-inferior "
                                       "(Optuna, on validation), then test the finalists once")
    _run_options(se)
    add_options(se)
    _other_commands(sub)
    return p


def _run_options(r) -> None:
    """The options of `run`, which `search` takes too (one configuration, bench.config.settings)."""
    from bench.config import settings as s
    from bench.config.checks import EXECUTORS
    from bench.config.sections import RunConfig

    d = RunConfig()
    data, train, meas = d.data, d.training, d.measurement
    r.add_argument("--methods", default=None,
                   help="comma-separated methods, families or '+' chains, with name:key=value "
                        f"parameters (default: {d.methods.spec})")
    r.add_argument("--dataset", default=None,
                   help=f"{data.dataset} (default, generated), a card name with --data-root (see "
                        "`list`), or FORMAT:PATH: folder:DIR, medmnist:FILE.npz, "
                        "chexpert:CSV, ham10000:CSV")
    r.add_argument("--data-root", default=None,
                   help="the local folder holding a card's dataset (nothing is downloaded)")
    r.add_argument("--uncertainty", default=None, choices=["u-ones", "u-zeros", "u-ignore"],
                   help="CheXpert uncertain (-1) labels become 1, 0, or ignored "
                        f"(default {data.uncertainty})")
    r.add_argument("--augment", default=None,
                   help="training augmentation: dataset (the dataset's own policy), none, "
                        f"upright or any-orientation (default {data.augment})")
    r.add_argument("--class-weights", default=None, choices=["auto", "balanced", "none"],
                   help="the hard-label loss's class weights: balanced (n / (k * n_class)), "
                        "none, or auto (balanced where the training split's largest class has "
                        f"1.5x its smallest's images; default {data.class_weights})")
    r.add_argument("--frontal-only", action="store_true",
                   help="CheXpert-style CSVs: keep frontal views only")
    r.add_argument("--labels", default=None,
                   help="comma-separated findings (CSV formats) or classes (folder, HAM10000) "
                        "to keep, in this order")
    r.add_argument("--task", default=None, choices=["binary", "multiclass", "multilabel"],
                   help=f"task type of the synthetic dataset (default: {data.task})")
    r.add_argument("--num-classes", type=int, default=None,
                   help="classes (multiclass) or labels (multilabel) of the synthetic dataset "
                        "(default: " + ", ".join(f"{n} {t}" for t, n in s.DEFAULT_CLASSES.items())
                        + ")")
    r.add_argument("--image-size", type=int, default=None,
                   help=f"square input size (default {data.image_size}; --quick "
                        f"{s.QUICK_IMAGE_SIZE})")
    r.add_argument("--teacher", default=None,
                   help="teacher architecture: a torchvision name, timm:NAME (with timm), or a+b for "
                        "one teacher on several backbones' concatenated pooled features "
                        f"(default {train.teacher})")
    r.add_argument("--teacher-checkpoint", default=None,
                   help="the user's own teacher weights (a state_dict; loaded weights-only)")
    r.add_argument("--teachers", default=None,
                   help="several separately trained teachers, e.g. resnet50,densenet121: the teacher "
                        "row is their average, and KD averages their soft targets")
    r.add_argument("--pretrained", action="store_true",
                   help="initialise teachers from ImageNet weights in the local torch hub cache "
                        "(nothing is downloaded; a clear error says where to put them)")
    r.add_argument("--student", default=None,
                   help=f"torchvision architecture of the KD student (default {train.student})")
    r.add_argument("--teacher-epochs", type=float, default=None,
                   help=f"teacher training epochs (default {train.teacher_epochs:g}; "
                        f"--quick {s.QUICK_TEACHER_EPOCHS:g}); it never trains fewer steps "
                        "than the student budget")
    r.add_argument("--student-epochs", type=float, default=None,
                   help="student / kd budget in epochs of the labelled images (default "
                        f"{train.student_epochs:g}; --quick at most {s.QUICK_STUDENT_EPOCHS:g})")
    r.add_argument("--finetune-epochs", type=float, default=None,
                   help=f"most fine-tuning epochs after pruning, which stops sooner once its "
                        f"validation AUC stops improving (default {train.finetune_epochs:g}; "
                        f"--quick at most {s.QUICK_FINETUNE_EPOCHS:g})")
    r.add_argument("--backends", default=None, help="comma-separated backends, or 'all' for every installed one (default: the "
                        "installed default backends: torch, onnxruntime, openvino)")
    r.add_argument("--precision", default=None,
                   help="also deploy every float model in these precisions, as rows of their own: "
                        "comma-separated bf16,fp16 (default: fp32 only; int8 comes from quant.*)")
    r.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of every measurement (default: physical cores minus "
                        "one, at least 1: batch-1 runs on all cores of a small VM are bimodal)")
    r.add_argument("--train-threads", type=int, default=None,
                   help="threads for training and the bench's own inference (default: physical "
                        "cores; with --executor ray the fewest CPUs of a cluster node that "
                        "trains); part of the teacher cache key")
    r.add_argument("--train-precision", default=None, choices=["auto", "fp32"],
                   help="what training computes in: auto (bf16 autocast on CPUs with AMX or "
                        "AVX512-BF16 for architectures without depthwise convolutions, fp16 "
                        "autocast on CUDA, fp32 otherwise) or fp32 everywhere; part of the "
                        f"teacher cache key (default {d.training.precision})")
    r.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="where backends run: cuda uses torch on the GPU and ONNX Runtime's CUDA "
                        "provider when installed; OpenVINO rows are n/a "
                        f"(default {d.device})")
    r.add_argument("--seed", type=int, default=None,
                   help=f"seed for data, training and splits (default {d.seed})")
    r.add_argument("--seeds", default=None,
                   help="comma-separated seeds: the whole pipeline once per seed, with a summary.csv "
                        "of mean and sd across them (overrides --seed)")
    r.add_argument("--repeats", type=int, default=None,
                   help=f"fresh measuring processes per row (default {meas.repeats}: what fits "
                        f"the 4-minute budget here; --rigorous at least {s.RIGOROUS_REPEATS})")
    r.add_argument("--retime-budget", type=float, default=None,
                   help="seconds of further fresh processes for rows whose latency is not yet "
                        f"stable, and their backend's teacher (default {meas.retime_budget_s:g}; "
                        f"--quick 0; --rigorous at least {s.RIGOROUS_RETIME_S:g}; 0: off)")
    r.add_argument("--rigorous", action="store_true",
                   help=f"for publication: at least {s.RIGOROUS_REPEATS} processes of at least "
                        f"{s.RIGOROUS_PLAN.min_s:g} s per row")
    r.add_argument("--margin", type=float, default=None,
                   help=f"non-inferiority margin on AUC against the teacher (default {meas.margin})")
    r.add_argument("--operating-point", default=None,
                   help="decision threshold: 0.5, threshold=T, or spec=S / sens=S chosen on the "
                        f"validation split (default {meas.operating_point})")
    r.add_argument("--bootstrap", type=int, default=None,
                   help=f"bootstrap resamples for every interval (default {meas.n_boot}; --quick "
                        f"at most {s.QUICK_N_BOOT})")
    r.add_argument("--preset", default=None,
                   help="a named setup (see `list`); --quick / --rigorous and options given on the "
                        "command line override it")
    r.add_argument("--quick", action="store_true",
                   help="smoke test: smaller data and images, fewer epochs and iterations")
    r.add_argument("--out", default=None, help="run directory (default reports/runs/<UTC time>)")
    r.add_argument("--no-cache", action="store_true", help="retrain the teacher and do not cache it")
    r.add_argument("--executor", default=None, choices=list(EXECUTORS),
                   help="local (default: this machine, Ray not imported) or ray: teachers, "
                        "chains and measurements as Ray tasks on a cluster (the [cluster] extra)")
    r.add_argument("--ray-address", default=None,
                   help="the Ray cluster to join, e.g. 127.0.0.1:6379 (default: $RAY_ADDRESS, "
                        "else a Ray instance started for this run on this machine)")
    r.add_argument("--allow-unauthenticated-ray", action="store_true",
                   help="join (or start) a Ray cluster that has no token authentication; "
                        "anyone who reaches it can run code and read its data: only for a "
                        "throwaway cluster")
    r.add_argument("--measure-on", default=None, metavar="RESOURCE",
                   help="measure only on nodes advertising this custom Ray resource (ray start "
                        "--resources '{\"RESOURCE\": 1}'), one measurement at a time per node")


def _other_commands(sub) -> None:
    c = sub.add_parser("check", help="CI gate: compare a run with a baseline; exit 1 on any regression")
    c.add_argument("run_dir", help="run directory (holds results.json)")
    c.add_argument("--baseline", required=True, help="baseline JSON, e.g. reports/baseline/ci.json")
    c.add_argument("--update", action="store_true",
                   help="write the run's sizes and its machine's speedups and AUCs to the "
                        "baseline (other machines' kept while sizes hold), after printing "
                        "what changes")
    c.add_argument("--speedup-tolerance", type=float, default=None,
                   help="allowed relative change of speedup (default: the baseline's, else 0.25)")
    c.add_argument("--auc-margin", type=float, default=None,
                   help="allowed fall of AUC below the baseline (default: the baseline's, else 0.02)")

    rp = sub.add_parser("report", help="re-render a run directory's report.html from its stored "
                                       "rows, predictions and latency samples")
    rp.add_argument("run_dir", help="run directory (holds results.json)")
    rp.add_argument("--screenshot", action="store_true",
                    help="also save RUN_DIR/report.png with headless Chromium (must be on PATH)")

    cp = sub.add_parser("compare", help="what changed between two runs, per row, and whether it "
                                        "is significant")
    cp.add_argument("run_a", help="the earlier run directory (A)")
    cp.add_argument("run_b", help="the later run directory (B)")
    cp.add_argument("--bootstrap", type=int, default=2000,
                    help="bootstrap resamples for the intervals (default 2000)")

    ls = sub.add_parser("list", help="show methods with their parameters, and backends")
    ls.add_argument("--archs", action="store_true", help="also list torchvision architectures")


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "list":
            return commands.run_list(args)
        if args.command == "check":
            return commands.run_check(args)
        if args.command == "report":
            return commands.run_report(args)
        if args.command == "compare":
            return commands.run_compare(args)
        if args.command == "search":
            return run_search(args)
        return _run(args)
    except ValueError as exc:  # bad input: one line, no traceback
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk: where it ran out; what was written stays whole
        if exc.errno != errno.ENOSPC:
            raise
        print(f"error: {one_line(exc)}; the results written before are intact",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rows measured so far are in the run directory", file=sys.stderr)
        return 130


def _run(args) -> int:
    from bench.config import settings

    cfg = settings.build(args)
    settings.validate(cfg)  # every bad input fails here, before any training
    from bench.pipeline.runner import run

    return run(cfg, execution.connect)
