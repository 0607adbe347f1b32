"""The commands that read what a run left, or the registries: `check` (the gate, and
`--update` of its baseline), `report`, `compare` and `list`.

They live apart from bench.cli, which parses the command line and turns errors into exit
codes, because each is a small program of its own over bench.results, reports and the
registries; none trains or measures. Each takes argparse's namespace and returns the exit
code; bad input is a ValueError (bench.cli prints it as one line and exits 2).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import methods
from bench import backends
from bench.results import baseline, gate
from reports.browser import find_chromium, load_page


def _user_path(text: str, what: str, kind: str) -> Path:
    """A path the user named for `check`, `report` or `compare`, checked before bench.results.store
    or bench.results.baseline read under it: a run directory that is a file, a baseline that is a
    folder, or a name the OS refuses (too long) would otherwise end in an OSError's
    traceback. `kind` is "dir" (must be one), "file" (must be one) or "new" (a file that
    may not exist yet, but not a folder)."""
    path = Path(text)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as exc:
        raise ValueError(f"{text!r}: {what}: {exc.strerror or exc}") from None
    if kind == "dir" and not is_dir:
        raise ValueError(f"{text}: no such {what}" if not exists else f"{text}: {what} is not a folder")
    if kind != "dir" and is_dir:
        raise ValueError(f"{text}: {what} is a folder, not a file")
    if kind == "file" and not exists:
        raise ValueError(f"{text}: {what} not found (write one with --update)")
    return path


def _tolerance(flag: str, value: float | None) -> float | None:
    """A gate tolerance: a finite number, 0 or more (NaN would make every comparison pass)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{flag} {value}: must be a finite number, 0 or more")
    return value


def run_check(args) -> int:
    _tolerance("--speedup-tolerance", args.speedup_tolerance)
    _tolerance("--auc-margin", args.auc_margin)
    run_dir = _user_path(args.run_dir, "run directory", "dir")
    _user_path(args.baseline, "baseline", "new" if args.update else "file")
    if args.update:
        path = Path(args.baseline)
        new, changes = baseline.update(path, run_dir, args.speedup_tolerance, args.auc_margin)
        print("\n".join(changes) if changes else "no change in gated figures")
        if not new["machines"]:
            print(f"warning: {run_dir}'s manifest does not describe the machine its rows were "
                  "measured on: the baseline gates sizes only", file=sys.stderr)
        baseline.write(path, new)
        print(f"wrote {path} ({len(new['rows'])} rows, speedups and AUCs of "
              f"{len(new['machines'])} machines)")
        return 0
    base = baseline.load_baseline(Path(args.baseline))
    notes: list[str] = []
    violations = gate.check(run_dir, base, args.speedup_tolerance, args.auc_margin, notes)
    for line in violations:
        print(line)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    print(f"gate: {len(base['rows'])} rows checked, {len(violations)} violations"
          + (f", {len(notes)} notes" if notes else ""), file=sys.stderr)
    return 1 if violations else 0


def run_report(args) -> int:
    from reports.html import write_report

    path = write_report(_user_path(args.run_dir, "run directory", "dir"))
    print(path)
    if args.screenshot:
        if find_chromium() is None:
            raise ValueError("--screenshot: no Chromium on PATH (install chromium, or set $CHROMIUM)")
        page = load_page(path, screenshot=path.with_name("report.png"))
        for line in page.console + [f"network request: {u}" for u in page.requests]:
            print(f"warning: {line}", file=sys.stderr)
        print(page.screenshot)
    return 0


def run_compare(args) -> int:
    from bench.results.compare import compare_runs
    from bench.results.compare_text import format_comparison

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be 0 (no intervals) or more")
    run_a = _user_path(args.run_a, "run directory", "dir")
    run_b = _user_path(args.run_b, "run directory", "dir")
    print(format_comparison(compare_runs(run_a, run_b, n_boot=args.bootstrap)))
    return 0


def run_list(args) -> int:
    print("methods (use with --methods; set parameters as name:key=value,key=value, each "
          "within its declared range or choices):")
    for name, cls in methods.all_methods().items():
        print(f"  {name}{'  [last step of a chain]' if cls.terminal else ''}")
        print(f"      {cls.summary}")
        for p in cls.params:
            default = str(p.default).lower() if p.type is bool else repr(p.default)
            print(f"      {p.name:<18} {p.type.__name__:<6} default {default:<8} "
                  f"{p.domain:<15} {p.help}")
    print("families: " + "; ".join(f"{f} = {' + '.join(m)}" for f, m in methods.families().items()))
    print("chains: join steps with '+', e.g. kd+prune.structured:ratio=0.3+quant.static")
    print("baselines measured in every run: teacher, "
          + ", ".join(methods.chain_name(c) for c in methods.baselines()))
    inst = set(backends.installed())
    print("backends (default: " + ", ".join(backends.defaults()) + "; --backends all: every "
          "installed one): " + ", ".join(f"{b}{'' if b in inst else ' (not installed)'}"
                                         for b in backends.names()))
    for name in backends.names():
        if name in inst:
            print(f"  {name}: deploys {backends.get(name).deploys}")
    _list_datasets()
    from bench.config import presets

    print("presets (use with --preset; command-line options override them):")
    for preset in presets.PRESETS.items().values():
        print(f"  {preset.name}: {preset.summary}")
    if args.archs:
        from bench.modelling.architectures import available_architectures

        print("architectures: " + ", ".join(available_architectures()))
    return 0


def _list_datasets() -> None:
    from bench import data
    from bench.data import cards

    forms = data.spec_forms()

    print("datasets (--dataset NAME --data-root PATH; the data stays on your disk):")
    print(f"  {'synthetic':<22} {'generated':<9} binary / multiclass / multilabel (the default)")
    for name, card in cards.all_cards().items():
        print(f"  {name:<22} {card.format:<9} {card.task:<10} {len(card.classes):>2} classes  "
              f"{card.title}")
    print(f"  or a format and a path: {forms}")

