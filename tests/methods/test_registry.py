import pytest

import methods


def names(spec):
    return [methods.chain_name(c) for c in methods.expand(spec)]


def test_every_builtin_method_is_registered():
    assert set(methods.all_methods()) == {"student", "kd", "prune.magnitude", "prune.structured",
                                          "quant.dynamic", "quant.qat", "quant.static"}
    assert [methods.chain_name(c) for c in methods.baselines()] == ["student"]
    # quant.qat trains: asked for by name, not by the `quant` family of the default run
    assert methods.families() == {"prune": ["prune.magnitude", "prune.structured"],
                                  "quant": ["quant.dynamic", "quant.static"]}
    assert names("kd+quant.qat") == ["kd+quant.qat"]


def test_families_expand_in_order():
    assert names("kd,prune,quant") == ["kd", "prune.magnitude", "prune.structured",
                                       "quant.dynamic", "quant.static"]


def test_chains_and_family_products():
    assert names("kd+prune.structured+quant.static") == ["kd+prune.structured+quant.static"]
    assert names("kd+quant") == ["kd+quant.dynamic", "kd+quant.static"]


def test_parameters_parse_typed_and_show_in_name():
    (chain,) = methods.expand("prune.structured:ratio=0.3,round_to=4")
    params = dict(chain[0].params)
    assert params["ratio"] == 0.3 and params["round_to"] == 4 and isinstance(params["round_to"], int)
    assert methods.chain_name(chain) == "prune.structured:ratio=0.3,round_to=4"


def test_default_valued_parameter_keeps_plain_name():
    assert names("prune.structured:ratio=0.5") == ["prune.structured"]


def test_parameters_inside_a_chain_and_a_list():
    got = names("kd:temperature=2,alpha=0.5+prune.structured:ratio=0.25,quant.static")
    assert got == ["kd:temperature=2.0,alpha=0.5+prune.structured:ratio=0.25", "quant.static"]


def test_duplicates_are_dropped():
    assert names("quant.static,quant") == ["quant.static", "quant.dynamic"]


@pytest.mark.parametrize("spec, message", [
    ("distill", "unknown method 'distill'"),
    ("prune.structured:ratoi=0.5", "has no parameter 'ratoi'"),
    ("prune.structured:ratio=half", "is not a float"),
    ("quant.static+prune.magnitude", "must be the last step"),
    ("kd:temperature", "key=value"),
    ("", "empty"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        methods.expand(spec)


def test_built_in_backends_keep_their_order_whatever_is_imported_first():
    """The default backends, and the order rows are measured and listed in, are the
    registry's built-in order, even where a method module imports a backend's helpers
    (and so registers that backend) before the registry loads."""
    import subprocess
    import sys

    code = ("import methods.quant.onnxruntime, methods.quant.qat_pt2e; "
            "from bench.backends import BACKENDS, defaults; "
            "print(','.join(BACKENDS.names())); print(','.join(defaults()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    from bench.backends import BACKENDS

    assert out[0].split(",")[:3] == ["torch", "onnxruntime", "openvino"]
    assert out[0].split(",") == BACKENDS.names()
    assert out[1] == "torch,onnxruntime,openvino"


def test_declared_bounds_refuse_a_value_when_it_is_parsed():
    from methods.base import Param

    ratio = Param("ratio", float, 0.5, "", bounds="(0, 1]")
    assert ratio.parse("1") == 1.0 and ratio.domain == "in (0, 1]"
    for bad in ("0", "1.5", "-2"):
        with pytest.raises(ValueError, match=r"parameter ratio: .* is not in \(0, 1\]"):
            ratio.parse(bad)
    assert (ratio.closed_end(0), ratio.closed_end(1)) == (None, 1.0)
    assert Param("n", int, 2, "", bounds="[1, inf)").closed_end(0) == 1
    for malformed in ("[1, inf]", "1..3", "(1, 1)", "[nan, 2]"):
        with pytest.raises(ValueError, match="bounds"):
            Param("x", float, 1.0, "", bounds=malformed)


def test_every_builtin_default_lies_within_its_declared_values():
    from methods.base import within

    for name, cls in methods.all_methods().items():
        for p in cls.params:
            assert p.bounds is None or within(p.default, p.bounds), (name, p.name)
            assert p.choices is None or p.default in p.choices, (name, p.name)
            assert isinstance(p.default, p.type), (name, p.name)


def test_a_parameter_outside_its_bounds_fails_when_the_methods_are_read():
    with pytest.raises(ValueError, match=r"parameter ratio: 1.5 is not in \(0, 1\)"):
        methods.expand("kd+prune.structured:ratio=1.5")
    with pytest.raises(ValueError, match=r"parameter calibration_size: 0 is not in \[1, inf\)"):
        methods.expand("quant.static:calibration_size=0")


def test_on_off_parameters_are_bools_written_either_way():
    (kd,), (pruned,) = methods.expand("kd:unlabelled=0"), methods.expand("prune.magnitude:unlabelled=true")
    assert dict(kd[0].params)["unlabelled"] is False
    assert dict(pruned[0].params)["unlabelled"] is True
    assert names("kd:unlabelled=1") == ["kd"]  # the default: not in the name
