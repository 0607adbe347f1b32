"""int8 on OpenVINO: NNCF post-training quantization of the OpenVINO model.

OpenVINO has no dynamic int8 for conv nets (its dynamic quantization is a runtime option
for the fully connected layers of LLMs), so quant.dynamic has no realisation here and
its rows say why.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from bench.backends import ExportEnv, Realised

NO_DYNAMIC = ("OpenVINO has no dynamic int8 for conv nets (its dynamic quantization is a "
              "runtime option for LLM fully connected layers); use quant.static")


def static(artifact, ov_model, env: ExportEnv, out_dir: Path,
           per_channel: bool = True, control=None) -> Realised:
    """NNCF post-training int8; with `control` (methods.quant.accuracy.Control) NNCF's own
    `quantize_with_accuracy_control` on the validation split instead."""
    # nncf imports torch.utils.cpp_extension, which warns about CUDA_HOME on CPU.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    nncf.set_log_level(40)  # ERROR: no progress bars in the user's terminal
    data = nncf.Dataset(list(env.calibration_batches(1)))
    notes = [f"NNCF post-training int8 (default preset"
             f"{'' if per_channel else ', per-tensor weights'}) calibrated on "
             f"{len(env.calibration)} training images"]
    # its rich progress bars ignore the log level; they draw on sys.stdout when called
    with contextlib.redirect_stdout(io.StringIO()):
        if control is None:
            model = nncf.quantize(ov_model, data, subset_size=len(env.calibration),
                                  advanced_parameters=_granularity(per_channel))
        else:
            model, note = _controlled(ov_model, data, len(env.calibration), per_channel, control)
            notes.append(note)
    # int8 kernels, f32 for what stays float (the backend's f32 hint)
    return Realised(model, "int8", tuple(notes))


def _controlled(ov_model, data, subset_size: int, per_channel: bool, control):
    """nncf.quantize_with_accuracy_control with an absolute drop of control.max_drop in
    the validation AUC (bench.stats.auc.auc_roc), ranking on accuracy.RANKING_SIZE images
    (one fewer than the split where it is that small) and returning at most as many
    layers to float as our rule does.

    Its validation_fn runs in NNCF's metric mode: the metric of the whole split is the
    AUC; each image's value, and the metric of the subsets NNCF ranks on, is minus the
    squared error of the logits against the float model's (NNCF's own ranking measure,
    its sign made "higher is better"). NNCF 3.4's logits mode sorts the groups by that
    error ascending and reverts the last, the one whose revert leaves the most error: on
    a model with one broken layer (tests/methods/test_accuracy_control.py) it reverted every
    other layer first. NNCF does not return which operations it reverted: it logs them."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from methods.quant.accuracy import RANKING_SIZE, Outcome, within

    x = control.inputs()
    items = [(x[i:i + 1], i) for i in range(len(x))]
    # `validate` tells NNCF's ranking subsets from the whole split by their size, so a
    # subset must be a proper one: with RANKING_SIZE images or fewer NNCF ranked on the
    # whole split, and its ranking calls were answered with AUCs and counted as the
    # whole split's figures
    ranking = max(1, min(RANKING_SIZE, len(x) - 1))

    def logits_of(compiled, items):
        return np.concatenate([np.array(compiled(image)[0]) for image, _ in items])  # a reused buffer

    reference = logits_of(_compile(ov_model), items)
    whole_split: list[float] = []  # the AUCs NNCF measured: the float model's, then int8's, ...

    def validate(compiled, items):
        items = list(items)
        index = [i for _, i in items]
        logits = logits_of(compiled, items)
        values = -((logits - reference[index]) ** 2).reshape(len(items), -1).mean(axis=1)
        if len(items) < len(x):
            return float(values.mean()), values.tolist()
        whole_split.append(control.auc(logits, index))
        return whole_split[-1], values.tolist()

    n_layers = sum(op.get_type_name() in _WEIGHTED for op in ov_model.get_ops())
    with _reverted_operations() as reverted:
        model = nncf.quantize_with_accuracy_control(
            ov_model, data, nncf.Dataset(items, lambda item: item[0]), validate,
            max_drop=control.max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=subset_size,
            advanced_quantization_parameters=_granularity(per_channel),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=control.cap(n_layers), ranking_subset_size=ranking,
                num_ranking_workers=1))
    float_auc = control.auc(reference)
    int8_auc = control.auc(logits_of(_compile(model), items))
    # NNCF validates the whole split for the float model, then all-int8, then after each
    # revert: the second is the AUC before any layer went back to float
    outcome = Outcome(model, tuple(reverted), float_auc, int8_auc, control.max_drop,
                      whole_split[1] if len(whole_split) > 1 else None,
                      capped=not within(float_auc - int8_auc, control.max_drop))
    return model, outcome.note()


_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")


def _compile(model):
    """A CPU compiled model in f32, as NNCF validates and the backend deploys it."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


@contextlib.contextmanager
def _reverted_operations():
    """The operation names NNCF's accuracy restorer reverted to float, read from its log
    (its final "K out of N were reverted back to the floating-point precision:" record,
    else, when it reverted everything, each "Reverted K operations ..." record), its
    console kept quiet."""
    from nncf.common.logging import nncf_logger

    names: list[str] = []
    steps: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines = record.getMessage().splitlines()
            if not lines or "floating-point precision" not in lines[0]:
                return
            listed = [line.strip() for line in lines[1:] if line.strip()]
            if lines[0].startswith("Reverted "):
                steps.extend(listed)
            elif "were reverted back" in lines[0]:
                names[:] = listed

    handler, level, propagate = Collect(logging.INFO), nncf_logger.level, nncf_logger.propagate
    quiet = [(h, h.level) for h in nncf_logger.handlers]
    for h, _ in quiet:
        h.setLevel(max(h.level, logging.ERROR))
    nncf_logger.addHandler(handler)
    nncf_logger.setLevel(logging.INFO)
    nncf_logger.propagate = False  # its INFO records stay out of the root logger's handlers
    try:
        yield names
        if not names:
            names.extend(steps)
    finally:
        nncf_logger.removeHandler(handler)
        nncf_logger.setLevel(level)
        nncf_logger.propagate = propagate
        for h, was in quiet:
            h.setLevel(was)


def _granularity(per_channel: bool):
    """NNCF's default weights are per channel; per_channel=False asks for one scale per
    tensor through its advanced parameters."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )

    if per_channel:
        return None
    return AdvancedQuantizationParameters(
        weights_quantization_params=QuantizationParameters(per_channel=False))
