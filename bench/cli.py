"""Command line: `python -m bench run|list`."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="Compress a medical image classifier every way and measure "
                                            "every candidate alike.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train/load the teacher, apply methods, measure, report")
    r.add_argument("--methods", default="kd,prune,quant",
                   help="comma-separated methods, families or '+' chains, with name:key=value "
                        "parameters (default: kd,prune,quant)")
    r.add_argument("--dataset", default="synthetic",
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
    r.add_argument("--teacher", default="densenet121", help="torchvision architecture of the teacher")
    r.add_argument("--teacher-checkpoint", default=None,
                   help="the user's own teacher weights (a state_dict; loaded weights-only)")
    r.add_argument("--student", default="mobilenet_v2", help="torchvision architecture of the KD student")
    r.add_argument("--teacher-epochs", type=float, default=None, help="teacher training epochs (default 1.25; --quick 2 at 32 px)")
    r.add_argument("--student-epochs", type=float, default=None, help="student / kd epochs (default 1.25)")
    r.add_argument("--finetune-epochs", type=float, default=None,
                   help="fine-tuning epochs after pruning (default 0.2)")
    r.add_argument("--backends", default=None, help="comma-separated backends (default: every installed one)")
    r.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where backends run: cuda uses torch on the GPU and ONNX Runtime's CUDA "
                        "provider when installed; OpenVINO rows are n/a (default cpu)")
    r.add_argument("--seed", type=int, default=0, help="seed for data, training and splits (default 0)")
    r.add_argument("--quick", action="store_true",
                   help="smoke test: smaller data and images, fewer epochs and iterations")
    r.add_argument("--out", default=None, help="run directory (default reports/runs/<UTC time>)")
    r.add_argument("--no-cache", action="store_true", help="retrain the teacher and do not cache it")

    ls = sub.add_parser("list", help="show methods with their parameters, and backends")
    ls.add_argument("--archs", action="store_true", help="also list torchvision architectures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args)
        return _run(args)
    except ValueError as exc:  # bad input: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rows measured so far are in the run directory", file=sys.stderr)
        return 130


def _run(args) -> int:
    from bench import backends
    from bench.config import RunConfig, quick_profile
    from bench.runner import run

    synthetic = args.dataset in ("", "synthetic")
    if not synthetic and (args.task is not None or args.num_classes is not None):
        raise ValueError(f"--task and --num-classes shape the synthetic dataset; "
                         f"{args.dataset} defines its own task and classes")
    labels = None
    if args.labels is not None:
        labels = [x.strip() for x in args.labels.split(",")]
        if not all(labels):
            raise ValueError(f"--labels {args.labels!r}: empty name in the list")
    cfg = RunConfig(methods=args.methods, dataset=args.dataset, task=args.task or "binary",
                    seed=args.seed, teacher=args.teacher,
                    teacher_checkpoint=args.teacher_checkpoint, student=args.student,
                    out=args.out, use_cache=not args.no_cache, device=args.device,
                    data_root=args.data_root, uncertainty=args.uncertainty or "u-ones",
                    frontal_only=args.frontal_only, labels=labels)
    if args.num_classes is not None:
        cfg.num_classes = args.num_classes
    elif cfg.task == "multiclass":
        cfg.num_classes = 4
    elif cfg.task == "multilabel":
        cfg.num_classes = 5
    if args.quick:
        quick_profile(cfg, args.image_size is not None)
    if args.image_size is not None:
        cfg.image_size = args.image_size
    for name in ("teacher_epochs", "student_epochs", "finetune_epochs"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads {args.threads}: must be at least 1")
        cfg.threads = args.threads
    cfg.backends = (args.backends.split(",") if args.backends else backends.installed())
    for b in cfg.backends:
        if b not in backends.names():
            raise ValueError(f"--backends: unknown backend {b!r}; known: {', '.join(backends.names())}")
    return run(cfg)


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
