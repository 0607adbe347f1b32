"""`python -m bench search`: its own options (the run options come from bench.cli) and
the dispatch, so the command line of a search lives beside the search."""

from __future__ import annotations

from bench.search import SearchOptions, parse_duration, search
from bench.search.finalists import REFERENCE
from bench.search.space import DEFAULT_SPACE


def add_options(p) -> None:
    p.add_argument("--space", default=None,
                   help="chain templates in the --methods syntax, where a parameter may be a range "
                        "lo..hi (lo..hi/step: on a grid) or a choice a|b|c, e.g. "
                        "'kd:temperature=2|4|8+prune.structured:ratio=0.2..0.8/0.05' (default: kd, "
                        "structured pruning and static int8, alone and chained; see docs/search.md)")
    p.add_argument("--minimize", default="latency",
                   help="objectives, comma-separated: latency[:BACKEND], file_mib[:BACKEND], macs, "
                        "params; several give a Pareto front (default latency; the backend "
                        "defaults to onnxruntime)")
    p.add_argument("--trials", type=int, default=None,
                   help="finished trials to reach, counted over every attempt at the search")
    p.add_argument("--time", default=None,
                   help="seconds this attempt may search, e.g. 600, 10m, 1.5h (then the "
                        "finalists are measured)")
    p.add_argument("--finalists", type=int, default=5,
                   help="at most this many finalists from a Pareto front (one objective: the best "
                        "trial); default 5")
    p.add_argument("--reference", default=REFERENCE,
                   help=f"a chain measured beside the finalists on test (default {REFERENCE}; "
                        "'none': no reference)")
    p.add_argument("--resume", action="store_true",
                   help="continue the stopped search in --out (same options): no finished trial "
                        "is run again")


def run_search(args) -> int:
    from bench.config import settings

    if args.methods is not None:
        raise ValueError("--methods: a search takes --space (the chains it may try), not --methods")
    if args.seeds is not None:
        raise ValueError("--seeds: a search runs one seed (give --seed)")
    if args.resume and not args.out:
        raise ValueError("--resume: name the search directory to continue with --out")
    cfg = settings.build(args)
    reference = None if (args.reference or "").strip().lower() in ("", "none") else args.reference
    opts = SearchOptions(space=args.space or DEFAULT_SPACE, minimize=args.minimize,
                         trials=args.trials,
                         time_s=None if args.time is None else parse_duration(args.time),
                         finalists=args.finalists, reference=reference, resume=args.resume)
    return search(cfg, opts)
