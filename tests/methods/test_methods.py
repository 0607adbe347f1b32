import numpy as np
import torch

import methods
from bench import backends
from bench.modelling.architectures import count_params, state_bytes
from tests.helpers import assert_unchanged, quantized, snapshot


def apply(spec, parent, ctx):
    (chain,) = methods.expand(spec)
    step = chain[0]
    return methods.get(step.method)().apply(parent, ctx, **dict(step.params))


def test_magnitude_pruning_is_sparser_and_leaves_input_alone(tiny_teacher, tiny_context):
    before = snapshot(tiny_teacher.module)
    art = apply("prune.magnitude:sparsity=0.6", tiny_teacher, tiny_context)
    assert_unchanged(tiny_teacher.module, before)
    total, nonzero = count_params(art.module)
    assert total == count_params(tiny_teacher.module)[0]  # dense shapes kept
    weights = [m.weight for m in art.module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zero_frac = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zero_frac - 0.6) < 0.01
    assert not any(n.endswith("_orig") for n in art.module.state_dict())  # made permanent


def test_structured_pruning_is_smaller_and_still_runs(tiny_teacher, tiny_context):
    before = snapshot(tiny_teacher.module)
    art = apply("prune.structured:ratio=0.5,round_to=1", tiny_teacher, tiny_context)
    assert_unchanged(tiny_teacher.module, before)
    assert count_params(art.module)[0] < 0.5 * count_params(tiny_teacher.module)[0]
    assert art.module(torch.zeros(2, 3, 16, 16)).shape == (2, 2)


def test_static_quantization_is_int8_and_close(tiny_teacher, tiny_context, tiny_data):
    before = snapshot(tiny_teacher.module)
    art = apply("quant.static", tiny_teacher, tiny_context)
    assert_unchanged(tiny_teacher.module, before)
    assert art.precision == "int8" and set(art.realisations) == set(backends.names())
    assert state_bytes(art.module) < 0.5 * state_bytes(tiny_teacher.module)
    x = torch.from_numpy(tiny_data.test.images[:32]).expand(-1, 3, -1, -1)
    with torch.no_grad():
        ref, got = tiny_teacher.module(x), art.module(x)
    assert (ref - got).abs().max() < 0.25 * ref.abs().max() + 0.05


def test_dynamic_quantization_says_what_it_quantized(tiny_teacher, tiny_context):
    before = snapshot(tiny_teacher.module)
    art = apply("quant.dynamic", tiny_teacher, tiny_context)
    assert_unchanged(tiny_teacher.module, before)
    kinds = {type(m).__name__ for m in art.module.modules()}
    assert "Linear" in kinds and "Conv2d" in kinds  # dynamic Linear, float convs
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in art.module.modules())
    assert "Linear layers only" in art.notes[0] and "2 Conv2d left in fp32" in art.notes[0]


def test_kd_trains_a_smaller_student_and_leaves_teacher_alone(tiny_teacher, tiny_context):
    before = snapshot(tiny_teacher.module)
    art = apply("kd:epochs=0.34", tiny_teacher, tiny_context)
    assert_unchanged(tiny_teacher.module, before)
    assert art.arch == "mobilenet_v3_small"
    assert art.module(torch.zeros(1, 3, 16, 16)).shape == (1, 2)
    assert "distilled from teacher" in art.notes[0]


def test_student_does_not_depend_on_what_ran_before(tiny_context):
    """A cached teacher (nothing trained first) and a fresh one must give the same student."""
    from methods.student import train_student

    torch.manual_seed(123)
    a = train_student(tiny_context, 0.34, 0.05, None, 0.0, 1.0, "a")
    torch.rand(1000)  # as if a teacher had been trained in this process first
    b = train_student(tiny_context, 0.34, 0.05, None, 0.0, 1.0, "b")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_kd_distils_on_unlabelled_images_in_the_students_step_budget(tiny_teacher, tiny_context,
                                                                      monkeypatch):
    """kd and the student baseline take the same number of steps; only kd sees the
    unlabelled images, and only through the distillation term."""
    from dataclasses import replace

    import methods.student as student
    from bench.modelling.training import predict_logits

    rng = np.random.default_rng(1)
    unlabelled = rng.normal(size=(40, 1, 16, 16)).astype(np.float32)
    ctx = replace(tiny_context, transfer_images=unlabelled,
                  transfer_logits=predict_logits(tiny_teacher.module, unlabelled))
    seen = []

    def spy(model, images, labels, task, settings, name, **kw):
        seen.append((name, len(images), settings.steps, settings.optimizer, np.asarray(labels)))
        return model.eval()

    monkeypatch.setattr(student, "train", spy)
    art = apply("kd:epochs=2", tiny_teacher, ctx)
    student.train_student(ctx, 2, 5e-3, None, 0.0, 1.0, "student")
    (k_name, k_n, k_steps, k_opt, k_labels), (s_name, s_n, s_steps, s_opt, _) = seen
    n = len(ctx.train_images)
    assert (k_n, s_n) == (n + 40, n) and k_steps == s_steps == 2 * -(-n // 32)
    assert k_opt == s_opt == "adamw"
    assert (k_labels[n:] == -1).all() and (k_labels[:n] >= 0).all()  # no hard loss on them
    assert any("40 unlabelled images" in note for note in art.notes)
    seen.clear()
    apply("kd:epochs=2,unlabelled=0", tiny_teacher, ctx)
    assert seen[0][1] == n


def test_hard_loss_ignores_unlabelled_targets():
    from bench.task_kinds import Task

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 3.0]])
    binary = Task("binary", ("a", "b"))
    y = torch.tensor([0, -1, 1])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], y[[0, 2]])
    assert torch.allclose(binary.loss(logits, y), expected)
    assert binary.unlabelled(2).tolist() == [-1, -1]
    multi = Task("multilabel", ("a", "b"))
    assert torch.isnan(multi.unlabelled(1)).all()


def test_every_quant_realisation_satisfies_the_protocol(tiny_teacher, tiny_context):
    """Each adapter an int8 method hands to `deploy` binds the bench.backends.Realisation
    call (artifact, float_graph, env, out_dir), whichever backend's graph it takes."""
    import inspect

    from methods.quant import qat

    adapters = {}
    for name in ("quant.dynamic", "quant.static"):
        for backend, adapter in quantized(tiny_teacher, tiny_context, name).realisations.items():
            adapters[f"{name} on {backend}"] = adapter
    adapters.update({f"quant.qat {f.__name__}": f
                     for f in (qat.as_trained, qat.qdq_onnx, qat.qdq_openvino)})
    callables = {k: a for k, a in adapters.items() if not isinstance(a, str)}
    assert len(callables) >= 10, sorted(adapters)
    for where, adapter in callables.items():
        try:
            inspect.signature(adapter).bind(object(), object(), object(), object())
        except TypeError as exc:
            raise AssertionError(f"{where} does not take the Realisation call: {exc}") from None
