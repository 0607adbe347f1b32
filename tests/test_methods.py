import torch

import methods
from bench.models import count_params, state_bytes
from tests.conftest import assert_unchanged, snapshot


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
    assert art.precision == "int8" and art.quantization == "static"
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
    from methods.kd import train_student

    torch.manual_seed(123)
    a = train_student(tiny_context, 0.34, 0.05, None, 0.0, 1.0, "a")
    torch.rand(1000)  # as if a teacher had been trained in this process first
    b = train_student(tiny_context, 0.34, 0.05, None, 0.0, 1.0, "b")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
