"""Named setups for `--preset NAME`: a reference paper's documented setup, or CI's.

A preset fills the command-line options the user did not give (what the user gives
wins), then may adjust the configuration further (`configure`), e.g. the latency plan.
Published figures, where a paper gives them, are stored with the preset and shown
beside ours in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.measure.latency import LatencyPlan


@dataclass(frozen=True)
class Preset:
    """A named setup.

    `published` holds the reference paper's own figures, which the report shows beside
    ours ("Published figures"). Its shape: this bench's model name (teacher, student, kd,
    prune.structured, kd+quant.static, ...) -> {Result column name -> the paper's figure},
    plus an optional "note" (where the figure comes from, e.g. "Table 3, ResNet-18
    student"). A figure is a number in the column's unit (see bench.result.Result), or a
    string when the paper gives more, such as "0.858 ± 0.004". For example:

        published={"teacher": {"auc_roc": 0.858, "accuracy": 0.80, "note": "Table 2"},
                   "kd": {"auc_roc": 0.851, "params": 11_200_000}}

    Each figure is shown beside the same column of our row for that model (ok rows only),
    on every backend of the run. `citation` names the paper.
    """

    name: str
    summary: str
    options: dict = field(default_factory=dict)  # CLI option dest -> value
    latency: LatencyPlan | None = None
    shared_process: bool | None = None
    published: dict = field(default_factory=dict)
    citation: str = ""

    def fill(self, args) -> None:
        """Set every option the user left unset (None, or False for a flag)."""
        for name, value in self.options.items():
            if getattr(args, name, None) in (None, False):
                setattr(args, name, value)

    def configure(self, cfg) -> None:
        if self.latency is not None:
            cfg.latency = self.latency
        if self.shared_process is not None:
            cfg.shared_process = self.shared_process


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


register(Preset(
    name="ci",
    summary="CI's regression run: --quick data and training, fixed seed, every method family, "
            "every backend, 1 thread, a fresh process per row",
    options={"quick": True, "methods": "kd,prune,quant", "seed": 0, "threads": 1},
    # One thread: at 2 threads this machine's per-process latency is bimodal (README), and
    # speedup is gated to +-25%. A fresh process per row, as in a real run, for the same reason.
    latency=LatencyPlan(warmup_n=10, warmup_s=0.2, min_n=100, min_s=1.0, max_s=10.0),
    shared_process=False,
))


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r}: unknown preset; available: {', '.join(PRESETS)}")
    return PRESETS[name]
