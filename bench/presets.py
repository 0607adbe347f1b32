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

    options: CLI option (argparse dest) -> value, filled where the user gave none.
    synthetic: options used only with `--dataset synthetic` (task type and label count
      of the embedded data that stands in for the paper's dataset).
    image_size / seeds: the paper's; a --quick run keeps the quick size and the first seed.

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
    options: dict = field(default_factory=dict)
    synthetic: dict = field(default_factory=dict)
    image_size: int | None = None
    seeds: tuple[int, ...] = ()
    latency: LatencyPlan | None = None
    shared_process: bool | None = None
    repeats: int | None = None
    published: dict = field(default_factory=dict)
    citation: str = ""

    def fill(self, args) -> None:
        """Set every option the user left unset (None, or False for a flag)."""
        given = {k for k, v in vars(args).items() if v is not None and v is not False}
        for name, value in self.options.items():
            if name not in given:
                setattr(args, name, value)
        if (getattr(args, "dataset", None) or "synthetic") == "synthetic":
            for name, value in self.synthetic.items():  # these win over options, not the user
                if name not in given:
                    setattr(args, name, value)
        if self.image_size and args.image_size is None and not args.quick:
            args.image_size = self.image_size
        if self.seeds and args.seeds is None and args.seed is None:
            seeds = self.seeds[:1] if args.quick else self.seeds
            args.seeds = ",".join(map(str, seeds)) if len(seeds) > 1 else None
            args.seed = seeds[0]

    def configure(self, cfg) -> None:
        if self.latency is not None:
            cfg.latency = self.latency
        if self.shared_process is not None:
            cfg.shared_process = self.shared_process
        if self.repeats is not None:
            cfg.repeats = self.repeats


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


register(Preset(
    name="ci",
    summary="CI's regression run: --quick data and training, fixed seed, every method family, "
            "every backend, 1 thread, 3 fresh processes per row",
    options={"quick": True, "methods": "kd,prune,quant", "seed": 0, "threads": 1},
    # speedup is gated to +-25%. Measured here: one 1 s process per row at 1 thread moved
    # speedups by up to 43% between two runs (one slow teacher process moves a whole
    # backend); the median of 3 processes per row is what the gate reads.
    latency=LatencyPlan(warmup_n=10, warmup_s=0.2, min_n=100, min_s=0.5, max_s=10.0),
    shared_process=False, repeats=3,
))


CHEXPERT_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

register(Preset(
    name="chexpert-kd",
    summary="CheXpert multilabel KD: DenseNet-121 -> MobileNetV2, the 5 competition labels, "
            "u-ones, alpha 0.7 on the hard-label loss, T=6, 224 px, 3 seeds",
    options={"dataset": "chexpert-v1.0-small", "teacher": "densenet121",
             "student": "mobilenet_v2", "uncertainty": "u-ones",
             "labels": ",".join(CHEXPERT_LABELS),
             # our kd alpha weighs the KD term: the paper's 0.7 on the hard loss is 0.3 here
             "methods": "kd:alpha=0.3,temperature=6"},
    synthetic={"task": "multilabel", "num_classes": len(CHEXPERT_LABELS), "labels": None,
               "uncertainty": None},
    image_size=224, seeds=(0, 1, 2),
    published={
        "teacher": {"auc_roc": "0.858 ± 0.0015", "params": 6.96e6, "weights_mib": 26.87,
                    "note": "macro AUC, mean ± sd of 3 seeds"},
        "kd:temperature=6.0,alpha=0.3": {"auc_roc": "0.865 ± 0.0010", "params": 2.23e6,
                                       "weights_mib": 8.64, "note": "the distilled student"},
        "student": {"auc_roc": "0.824 ± 0.0006", "params": 2.23e6, "weights_mib": 8.64,
                    "note": "the same student without distillation"},
    },
    citation="CheXpert knowledge-distillation reference paper (macro AUC, mean +- sd of 3 seeds)",
))

register(Preset(
    name="covid-malaria",
    summary="binary chest X-ray / malaria smear: KD vs pruning vs quantization, size as % of "
            "the teacher, speedup, quality drop",
    options={"dataset": "malaria-cells", "teacher": "densenet121", "student": "mobilenet_v2",
             "methods": "kd,prune,quant"},
    synthetic={"task": "binary"},
    image_size=224,
    published={
        # the issue lists the paper's two settings without saying which method each is
        "published setting 1": {"compression_ratio": round(100 / 18.4, 2), "speedup": 6.14,
                                "note": "18.4% of the teacher's size; quality down 0.9%"},
        "published setting 2": {"compression_ratio": round(100 / 15.0, 2), "speedup": 5.86,
                                "note": "15% of the teacher's size; quality down 1.2%"},
    },
    citation="COVID-19 / malaria compression reference paper",
))

register(Preset(
    name="skin-lesion",
    summary="HAM10000, 7 classes, multiclass KD (DenseNet-121 -> MobileNetV2), 224 px",
    options={"dataset": "ham10000", "teacher": "densenet121", "student": "mobilenet_v2",
             "methods": "kd"},
    synthetic={"task": "multiclass", "num_classes": 7},
    image_size=224,
    published={"kd": {"accuracy (HAM10000)": "0.8869-0.9324",
                      "accuracy (ISIC 2019)": "0.8214-0.8413"}},
    citation="skin-lesion KD reference paper (accuracy ranges over its students)",
))


def _ensemble_teacher() -> str:
    """ResNet50V2 from timm when installed; else torchvision's ResNet-50 (v1.5) stands in."""
    import importlib.util

    return "timm:resnetv2_50+vgg19" if importlib.util.find_spec("timm") else "resnet50+vgg19"


register(Preset(
    name="covid-ensemble",
    summary="COVID-19 radiography: one teacher on concatenated ResNet50V2-style + VGG19 pooled "
            "features, distilled into MobileNetV2",
    options={"dataset": "covid19-radiography", "teacher": _ensemble_teacher(),
             "student": "mobilenet_v2", "methods": "kd"},
    synthetic={"task": "multiclass", "num_classes": 4},
    image_size=224,
    citation="COVID-19 ensemble-teacher KD reference paper",
))


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r}: unknown preset; available: {', '.join(PRESETS)}")
    return PRESETS[name]
