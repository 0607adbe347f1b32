"""A step applied to a parent and a context that arrive apart (a Ray task unpickles each
on its own) distils what the same step distils in one process."""

import pickle
from dataclasses import replace

import pytest
import torch

import methods
from bench.pipeline.artifacts import apply_one, as_the_teacher


def _apart(*objects):
    """Each object through its own pickle round trip, as Ray's object store sends them."""
    return tuple(pickle.loads(pickle.dumps(o)) for o in objects)


@pytest.mark.parametrize("spec", ["kd:epochs=0.34", "prune.magnitude"])
def test_a_step_on_a_parent_sent_apart_from_its_context_distils_the_cached_soft_targets(
        spec, tiny_teacher, tiny_context):
    # cached soft targets that a recomputation cannot give (the bf16 ones of a real run
    # differ from an fp32 pass too): only a step that reads them trains the same weights
    ctx = replace(tiny_context, teacher_logits=tiny_context.teacher_logits.flip(0))
    (chain,) = methods.expand(spec)
    here = apply_one(tiny_teacher, chain, ctx)
    there = apply_one(*_apart(tiny_teacher), chain, *_apart(ctx))
    assert not isinstance(here, Exception) and not isinstance(there, Exception)
    for (k, a), b in zip(here.module.state_dict().items(), there.module.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_only_the_teachers_own_artifact_is_relinked_to_the_contexts_teacher(tiny_teacher,
                                                                            tiny_context):
    parent, ctx = _apart(tiny_teacher, tiny_context)
    assert parent.module is not ctx.teacher
    linked = as_the_teacher(parent, ctx)
    assert linked.module is ctx.teacher and linked.float_module is ctx.teacher
    step = methods.expand("kd")[0][0]
    made = replace(parent, name="kd", steps=(step,))  # a model made from the teacher
    assert as_the_teacher(made, ctx) is made
