"""Named setups for `--preset NAME`: a reference paper's documented setup, or CI's.

A preset is a layer of settings (dotted keys of bench.config.sections.RunConfig, e.g.
`"data.image_size": 224`) that `bench.config.settings.build` applies above the defaults and
below the profile (`--quick`, `--rigorous`) and the command line: what the user gives
wins, and a preset never touches the parsed options. Published figures, where a paper
gives them, are stored with the preset and shown beside ours in the report.

Presets live in a registry (bench.registry): the built-ins register below, and a
third-party distribution adds one through the `medbench.presets` entry-point group,
naming a module that registers on import or a Preset object itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bench.child.timed_loop import LatencyPlan
from bench.config import profiles
from bench.registry import Registry


@dataclass(frozen=True)
class Preset:
    """A named setup.

    settings: dotted config key -> value (`"training.teacher"`, `"seeds"`, ...; the keys
      are bench.config.settings.KEYS), applied as one layer.
    synthetic: settings applied over `settings` only when the run's dataset is synthetic
      (the task type and label count of the embedded data that stands in for the paper's).
      A paper's image size and seeds are plain settings: `--quick` then keeps its own
      size and the first seed, as a profile sits above the preset.

    `published` holds the reference paper's own figures, which the report shows beside
    ours ("Published figures"). Its shape: this bench's model name (teacher, student, kd,
    prune.structured, kd+quant.static, ...) -> {Result column name -> the paper's figure},
    plus an optional "note" (where the figure comes from, e.g. "Table 3, ResNet-18
    student"). A figure is a number in the column's unit (see bench.results.row.Result), or a
    string when the paper gives more, such as "0.858 ± 0.004". For example:

        published={"teacher": {"auc_roc": 0.858, "accuracy": 0.80, "note": "Table 2"},
                   "kd": {"auc_roc": 0.851, "params": 11_200_000}}

    Each figure is shown beside the same column of our row for that model (ok rows only),
    on every backend of the run. `citation` names the paper.
    """

    name: str
    summary: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    synthetic: Mapping[str, Any] = field(default_factory=dict)
    published: Mapping[str, Any] = field(default_factory=dict)
    citation: str = ""

    def __post_init__(self):
        # read-only views: a preset is shared by every run of the process
        for name in ("settings", "synthetic", "published"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def layer(self, synthetic: bool) -> dict[str, Any]:
        """The settings this preset contributes to a run on synthetic data or not."""
        return {**self.settings, **(self.synthetic if synthetic else {})}


PRESETS: Registry[Preset] = Registry("preset")
register = PRESETS.register


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r}: unknown preset; available: "
                         f"{', '.join(PRESETS.names())}")
    return PRESETS.get(name)


def _ci_settings() -> dict[str, Any]:
    """The quick profile's data and training values, written out: the ci preset sets its
    own measurement over them, which a profile (it sits above a preset) would overrule."""
    return {
        "data.image_size": profiles.QUICK_IMAGE_SIZE, "data.sizes": profiles.QUICK_SIZES,
        "training.teacher_epochs": profiles.QUICK_TEACHER_EPOCHS,
        "training.student_epochs": profiles.QUICK_STUDENT_EPOCHS,
        "training.finetune_epochs": profiles.QUICK_FINETUNE_EPOCHS,
        "measurement.n_boot": profiles.QUICK_N_BOOT, "measurement.retime_budget_s": 0.0,
        "methods.spec": "kd,prune,quant", "seed": 0, "measurement.threads": 1,
        # speedup is gated to +-25%. Measured here: one 1 s process per row at 1 thread
        # moved speedups by up to 43% between two runs (one slow teacher process moves a
        # whole backend); the median of 3 processes per row is what the gate reads.
        "measurement.latency": LatencyPlan(warmup_n=10, warmup_s=0.2, min_n=100, min_s=0.5,
                                           max_s=10.0),
        "measurement.shared_process": False, "measurement.repeats": 3,
    }


register(Preset(
    name="ci",
    summary="CI's regression run: quick-sized data and training, fixed seed, every method "
            "family, every backend, 1 thread, 3 fresh processes per row",
    settings=_ci_settings(),
))


CHEXPERT_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

register(Preset(
    name="chexpert-kd",
    summary="CheXpert multilabel KD: DenseNet-121 -> MobileNetV2, the 5 competition labels, "
            "u-ones, alpha 0.7 on the hard-label loss, T=6, 224 px, 3 seeds",
    settings={"data.dataset": "chexpert-v1.0-small", "training.teacher": "densenet121",
              "training.student": "mobilenet_v2", "data.uncertainty": "u-ones",
              "data.labels": list(CHEXPERT_LABELS),
              # our kd alpha weighs the KD term: the paper's 0.7 on the hard loss is 0.3 here
              "methods.spec": "kd:alpha=0.3,temperature=6",
              "data.image_size": 224, "seed": 0, "seeds": [0, 1, 2]},
    synthetic={"data.task": "multilabel", "data.num_classes": len(CHEXPERT_LABELS),
               "data.labels": None},
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

COVID_MALARIA_SETTINGS = {
    "data.dataset": "malaria-cells", "training.teacher": "densenet121",
    "training.student": "mobilenet_v2", "methods.spec": "kd,prune,quant", "data.image_size": 224}
COVID_MALARIA_PUBLISHED = {
    # the issue lists the paper's two settings without saying which method each is
    "published setting 1": {"compression_ratio": round(100 / 18.4, 2), "speedup": 6.14,
                            "note": "18.4% of the teacher's size; quality down 0.9%"},
    "published setting 2": {"compression_ratio": round(100 / 15.0, 2), "speedup": 5.86,
                            "note": "15% of the teacher's size; quality down 1.2%"},
}

register(Preset(
    name="covid-malaria",
    summary="binary chest X-ray / malaria smear: KD vs pruning vs quantization, size as % of "
            "the teacher, speedup, quality drop",
    settings=COVID_MALARIA_SETTINGS,
    synthetic={"data.task": "binary"},
    published=COVID_MALARIA_PUBLISHED,
    citation="COVID-19 / malaria compression reference paper",
))

EDGE_BACKENDS = ("executorch", "litert")

register(Preset(
    name="edge",
    summary="the covid-malaria setup on the edge runtimes (ExecuTorch with XNNPACK, LiteRT); "
            "64 px on the embedded data",
    settings={**COVID_MALARIA_SETTINGS, "measurement.backends": list(EDGE_BACKENDS)},
    # the embedded default's size: its teacher trains at 224 px only at 4-8 s a step here
    synthetic={"data.task": "binary", "data.image_size": 64},
    published=COVID_MALARIA_PUBLISHED,  # the paper's targets are "mobile and embedded devices"
    citation="COVID-19 / malaria compression reference paper, on mobile runtimes",
))

register(Preset(
    name="skin-lesion",
    summary="HAM10000, 7 classes, multiclass KD (DenseNet-121 -> MobileNetV2), 224 px",
    settings={"data.dataset": "ham10000", "training.teacher": "densenet121",
              "training.student": "mobilenet_v2", "methods.spec": "kd", "data.image_size": 224},
    synthetic={"data.task": "multiclass", "data.num_classes": 7},
    published={"kd": {"accuracy (HAM10000)": "0.8869-0.9324",
                      "accuracy (ISIC 2019)": "0.8214-0.8413"}},
    citation="skin-lesion KD reference paper (accuracy ranges over its students)",
))


def _ensemble_teacher() -> str:
    """ResNet50V2 from timm when installed; else torchvision's ResNet-50 (v1.5) stands in."""
    return "timm:resnetv2_50+vgg19" if importlib.util.find_spec("timm") else "resnet50+vgg19"


register(Preset(
    name="covid-ensemble",
    summary="COVID-19 radiography: one teacher on concatenated ResNet50V2-style + VGG19 pooled "
            "features, distilled into MobileNetV2",
    settings={"data.dataset": "covid19-radiography", "training.teacher": _ensemble_teacher(),
              "training.student": "mobilenet_v2", "methods.spec": "kd", "data.image_size": 224},
    synthetic={"data.task": "multiclass", "data.num_classes": 4},
    citation="COVID-19 ensemble-teacher KD reference paper",
))
