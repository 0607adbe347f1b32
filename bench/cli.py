"""Command line: `python -m bench run|check|report|compare|list`."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="Compress a medical image classifier every way and measure "
                                            "every candidate alike.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train/load the teacher, apply methods, measure, report")
    r.add_argument("--methods", default=None,
                   help="comma-separated methods, families or '+' chains, with name:key=value "
                        "parameters (default: kd,prune,quant)")
    r.add_argument("--dataset", default=None,
                   help="synthetic (default, generated), a card name with --data-root (see "
                        "`list`), or FORMAT:PATH: folder:DIR, medmnist:FILE.npz, "
                        "chexpert:CSV, ham10000:CSV")
    r.add_argument("--data-root", default=None,
                   help="the local folder holding a card's dataset (nothing is downloaded)")
    r.add_argument("--uncertainty", default=None, choices=["u-ones", "u-zeros", "u-ignore"],
                   help="CheXpert uncertain (-1) labels become 1, 0, or ignored (default u-ones)")
    r.add_argument("--frontal-only", action="store_true",
                   help="CheXpert-style CSVs: keep frontal views only")
    r.add_argument("--labels", default=None,
                   help="comma-separated findings (CSV formats) or classes (folder, HAM10000) "
                        "to keep, in this order")
    r.add_argument("--task", default=None, choices=["binary", "multiclass", "multilabel"],
                   help="task type of the synthetic dataset (default: binary)")
    r.add_argument("--num-classes", type=int, default=None,
                   help="classes (multiclass) or labels (multilabel) of the synthetic dataset")
    r.add_argument("--image-size", type=int, default=None, help="square input size (default 64; --quick 32)")
    r.add_argument("--teacher", default=None,
                   help="teacher architecture: a torchvision name, timm:NAME (with timm), or a+b for "
                        "one teacher on several backbones' concatenated pooled features")
    r.add_argument("--teacher-checkpoint", default=None,
                   help="the user's own teacher weights (a state_dict; loaded weights-only)")
    r.add_argument("--teachers", default=None,
                   help="several separately trained teachers, e.g. resnet50,densenet121: the teacher "
                        "row is their average, and KD averages their soft targets")
    r.add_argument("--pretrained", action="store_true",
                   help="initialise teachers from ImageNet weights in the local torch hub cache "
                        "(nothing is downloaded; a clear error says where to put them)")
    r.add_argument("--student", default=None, help="torchvision architecture of the KD student")
    r.add_argument("--teacher-epochs", type=float, default=None, help="teacher training epochs (default 1.25; --quick 2 at 32 px)")
    r.add_argument("--student-epochs", type=float, default=None, help="student / kd epochs (default 1.25)")
    r.add_argument("--finetune-epochs", type=float, default=None,
                   help="fine-tuning epochs after pruning (default 0.2)")
    r.add_argument("--backends", default=None, help="comma-separated backends (default: every installed one)")
    r.add_argument("--precision", default=None,
                   help="also deploy every float model in these precisions, as rows of their own: "
                        "comma-separated bf16,fp16 (default: fp32 only; int8 comes from quant.*)")
    r.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of every measurement (default: physical cores minus "
                        "one, at least 1: batch-1 runs on all cores of a small VM are bimodal)")
    r.add_argument("--train-threads", type=int, default=None,
                   help="threads for training and the bench's own inference (default: physical "
                        "cores); part of the teacher cache key")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where backends run: cuda uses torch on the GPU and ONNX Runtime's CUDA "
                        "provider when installed; OpenVINO rows are n/a (default cpu)")
    r.add_argument("--seed", type=int, default=None, help="seed for data, training and splits (default 0)")
    r.add_argument("--seeds", default=None,
                   help="comma-separated seeds: the whole pipeline once per seed, with a summary.csv "
                        "of mean and sd across them (overrides --seed)")
    r.add_argument("--repeats", type=int, default=None,
                   help="fresh measuring processes per row (default 1: what fits the 4-minute budget "
                        "here; --rigorous 5)")
    r.add_argument("--retime-budget", type=float, default=None,
                   help="seconds of further fresh processes for rows whose latency is not yet "
                        "stable, and their backend's teacher (default 30; 0: off)")
    r.add_argument("--rigorous", action="store_true",
                   help="for publication: at least 5 processes of at least 10 s per row")
    r.add_argument("--margin", type=float, default=None,
                   help="non-inferiority margin on AUC against the teacher (default 0.02)")
    r.add_argument("--operating-point", default=None,
                   help="decision threshold: 0.5, threshold=T, or spec=S / sens=S chosen on the "
                        "validation split (default 0.5)")
    r.add_argument("--bootstrap", type=int, default=None,
                   help="bootstrap resamples for every interval (default 2000; --quick 200)")
    r.add_argument("--preset", default=None,
                   help="a named setup (see `list`); options given on the command line override it")
    r.add_argument("--quick", action="store_true",
                   help="smoke test: smaller data and images, fewer epochs and iterations")
    r.add_argument("--out", default=None, help="run directory (default reports/runs/<UTC time>)")
    r.add_argument("--no-cache", action="store_true", help="retrain the teacher and do not cache it")

    c = sub.add_parser("check", help="CI gate: compare a run with a baseline; exit 1 on any regression")
    c.add_argument("run_dir", help="run directory (holds results.json)")
    c.add_argument("--baseline", required=True, help="baseline JSON, e.g. reports/baseline/ci.json")
    c.add_argument("--update", action="store_true",
                   help="write the run as the new baseline, after printing what changes")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args)
        if args.command == "check":
            return _check(args)
        if args.command == "report":
            return _report(args)
        if args.command == "compare":
            return _compare(args)
        return _run(args)
    except ValueError as exc:  # bad input: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rows measured so far are in the run directory", file=sys.stderr)
        return 130


def _run(args) -> int:
    from bench import backends
    from bench.config import RunConfig, quick_profile, rigorous_profile
    from bench.runner import run
    from bench.stats.threshold import parse_operating_point

    preset = None
    if args.preset:
        from bench import presets

        preset = presets.get(args.preset)
        preset.fill(args)
    dataset = args.dataset or "synthetic"
    synthetic = dataset in ("", "synthetic")
    if not synthetic and (args.task is not None or args.num_classes is not None):
        raise ValueError(f"--task and --num-classes shape the synthetic dataset; "
                         f"{dataset} defines its own task and classes")
    labels = None
    if args.labels is not None:
        labels = [x.strip() for x in args.labels.split(",")]
        if not all(labels):
            raise ValueError(f"--labels {args.labels!r}: empty name in the list")
    defaults = RunConfig()
    cfg = RunConfig(teacher_checkpoint=args.teacher_checkpoint, out=args.out,
                    use_cache=not args.no_cache, device=args.device,
                    preset=preset.name if preset else None,
                    data_root=args.data_root, uncertainty=args.uncertainty or "u-ones",
                    frontal_only=args.frontal_only, labels=labels)
    if args.teachers:
        if args.teacher_checkpoint:
            raise ValueError("--teachers and --teacher-checkpoint: choose one")
        cfg.teachers = [a for a in args.teachers.split(",") if a]
    cfg.pretrained = args.pretrained
    for name in ("methods", "dataset", "task", "teacher", "student", "seed", "margin",
                 "operating_point"):
        value = getattr(args, name)
        setattr(cfg, name, value if value is not None else getattr(defaults, name))
    if args.num_classes is not None:
        cfg.num_classes = args.num_classes
    elif cfg.task == "multiclass":
        cfg.num_classes = 4
    elif cfg.task == "multilabel":
        cfg.num_classes = 5
    parse_operating_point(cfg.operating_point)  # a bad one fails now, not after training
    if not 0 <= cfg.margin < 1:
        raise ValueError(f"--margin {cfg.margin}: must be in [0, 1)")
    if args.quick:
        quick_profile(cfg, args.image_size is not None)
    if preset is not None:
        preset.configure(cfg)
    if args.bootstrap is not None:
        if args.bootstrap < 0:
            raise ValueError(f"--bootstrap {args.bootstrap}: must be 0 (no intervals) or more")
        cfg.n_boot = args.bootstrap
    if args.rigorous:
        if args.quick:
            raise ValueError("--rigorous and --quick contradict each other: choose one")
        rigorous_profile(cfg)
    if args.repeats is not None:
        if args.repeats < 1 or (args.rigorous and args.repeats < 5):
            raise ValueError(f"--repeats {args.repeats}: must be at least {5 if args.rigorous else 1}")
        cfg.repeats = args.repeats
    if args.seeds:
        try:
            cfg.seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ValueError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
        if len(set(cfg.seeds)) != len(cfg.seeds):
            raise ValueError(f"--seeds {args.seeds!r}: a seed is repeated")
    if args.image_size is not None:
        cfg.image_size = args.image_size
    for name in ("teacher_epochs", "student_epochs", "finetune_epochs"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    for name in ("threads", "train_threads"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value}: must be at least 1")
            setattr(cfg, name, value)
    if args.retime_budget is not None:
        if args.retime_budget < 0:
            raise ValueError(f"--retime-budget {args.retime_budget}: must be 0 (off) or more")
        cfg.retime_budget_s = args.retime_budget
    cfg.backends = (args.backends.split(",") if args.backends else backends.installed())
    for b in cfg.backends:
        if b not in backends.names():
            raise ValueError(f"--backends: unknown backend {b!r}; known: {', '.join(backends.names())}")
    if args.precision:
        from bench.backends import LOWER_PRECISIONS

        cfg.precisions = [p for p in args.precision.split(",") if p != "fp32"]
        for p in cfg.precisions:
            if p not in LOWER_PRECISIONS:
                raise ValueError(f"--precision: unknown precision {p!r}; choose from "
                                 f"{', '.join(LOWER_PRECISIONS)} (fp32 rows are always there)")
    return run(cfg)


def _check(args) -> int:
    import json
    from pathlib import Path

    from bench import gate

    if args.update:
        path = Path(args.baseline)
        old = gate.load_baseline(path) if path.exists() else None
        tol = (old or {}).get("tolerances", {})
        new = gate.baseline_from_run(
            Path(args.run_dir),
            args.speedup_tolerance if args.speedup_tolerance is not None else tol.get(
                "speedup", gate.DEFAULT_SPEEDUP_TOLERANCE),
            args.auc_margin if args.auc_margin is not None else tol.get(
                "auc_margin", gate.DEFAULT_AUC_MARGIN))
        changes = gate.diff(old, new)
        print("\n".join(changes) if changes else "no change in gated figures")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(new, indent=1) + "\n")
        print(f"wrote {path} ({len(new['rows'])} rows)")
        return 0
    baseline = gate.load_baseline(Path(args.baseline))
    notes: list[str] = []
    violations = gate.check(Path(args.run_dir), baseline, args.speedup_tolerance, args.auc_margin,
                            notes)
    for line in violations:
        print(line)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    print(f"gate: {len(baseline['rows'])} rows checked, {len(violations)} violations"
          + (f", {len(notes)} speedups not gated (unstable)" if notes else ""), file=sys.stderr)
    return 1 if violations else 0


def _report(args) -> int:
    from reports.html import write_report

    path = write_report(args.run_dir)
    print(path)
    if args.screenshot:
        from reports.browser import find_chromium, load_page

        if find_chromium() is None:
            raise ValueError("--screenshot: no Chromium on PATH (install chromium, or set $CHROMIUM)")
        page = load_page(path, screenshot=path.with_name("report.png"))
        for line in page.console + [f"network request: {u}" for u in page.requests]:
            print(f"warning: {line}", file=sys.stderr)
        print(page.screenshot)
    return 0


def _compare(args) -> int:
    from bench.compare import compare_runs, format_comparison

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be 0 (no intervals) or more")
    print(format_comparison(compare_runs(args.run_a, args.run_b, n_boot=args.bootstrap)))
    return 0


def _list(args) -> int:
    import methods
    from bench import backends

    print("methods (use with --methods; set parameters as name:key=value,key=value):")
    for name, cls in methods.all_methods().items():
        print(f"  {name}{'  [last step of a chain]' if cls.terminal else ''}")
        print(f"      {cls.summary}")
        for p in cls.params:
            print(f"      {p.name:<18} {p.type.__name__:<6} default {p.default!r:<8} {p.help}")
    print("families: " + "; ".join(f"{f} = {' + '.join(m)}" for f, m in methods.families().items()))
    print("chains: join steps with '+', e.g. kd+prune.structured:ratio=0.3+quant.static")
    print("baselines measured in every run: teacher, student (the kd student without distillation)")
    inst = set(backends.installed())
    print("backends: " + ", ".join(f"{b}{'' if b in inst else ' (not installed)'}" for b in backends.names()))
    for name in backends.names():
        if name in inst:
            print(f"  {name}: deploys {backends.get(name).deploys}")
    _list_datasets()
    from bench import presets

    print("presets (use with --preset; command-line options override them):")
    for preset in presets.PRESETS.values():
        print(f"  {preset.name}: {preset.summary}")
    if args.archs:
        from bench.models import available_architectures

        print("architectures: " + ", ".join(available_architectures()))
    return 0


def _list_datasets() -> None:
    from bench.data import SPEC_FORMS, cards

    print("datasets (--dataset NAME --data-root PATH; the data stays on your disk):")
    print(f"  {'synthetic':<22} {'generated':<9} binary / multiclass / multilabel (the default)")
    for name, card in cards.all_cards().items():
        print(f"  {name:<22} {card.format:<9} {card.task:<10} {len(card.classes):>2} classes  "
              f"{card.title}")
    print(f"  or a format and a path: {SPEC_FORMS}")
