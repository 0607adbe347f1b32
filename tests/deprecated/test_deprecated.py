"""bench.deprecated: each deprecated API the project still calls works under this torch
and warns only as listed (every other warning an error, so an upgrade that removes one or
changes what it says fails here, naming it); and where the project calls one, only the
listed warnings are silenced: any other warning reaches the caller."""

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench import deprecated
from bench.backends import Realised
from tests.helpers import TinyNet, quantized

OTHER = "medbench test: a warning that is not a listed deprecation"
EXAMPLE = (torch.zeros(1, 3, 16, 16),)


def _fx_quantization(tmp_path):
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

    torch.ao.quantization.quantize_dynamic(TinyNet().eval(), {nn.Linear}, dtype=torch.qint8)
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(TinyNet().eval(), get_default_qconfig_mapping("x86"), EXAMPLE)
    prepared(torch.randn(4, 3, 16, 16))
    convert_fx(prepared)
    qat = prepare_qat_fx(TinyNet().train(), get_default_qat_qconfig_mapping("x86"),
                         (torch.zeros(2, 3, 16, 16),))
    qat(torch.randn(4, 3, 16, 16))
    convert_fx(qat.eval())


def _torchscript(tmp_path):
    traced = torch.jit.trace(TinyNet().eval(), EXAMPLE, check_trace=False)
    torch.jit.save(traced, str(tmp_path / "model.pt"))
    torch.jit.load(str(tmp_path / "model.pt"))


def _torchscript_onnx(tmp_path):
    from methods.quant.qat import _register_batch_norm

    _register_batch_norm()  # torch.onnx.register_custom_op_symbolic with symbolic_helper
    with torch.no_grad():
        torch.onnx.export(TinyNet().eval(), EXAMPLE, str(tmp_path / "model.onnx"), dynamo=False,
                          opset_version=17, dynamic_axes={"input": {0: "batch"}},
                          input_names=["input"])


USES = {"fx-quantization": _fx_quantization, "torchscript": _torchscript,
        "torchscript-onnx": _torchscript_onnx}


def test_every_listed_family_has_a_use_here():
    assert set(USES) == set(deprecated.CATALOGUE)


@pytest.mark.parametrize("name", sorted(deprecated.CATALOGUE))
def test_each_deprecated_api_works_and_warns_only_as_listed(name, tmp_path):
    family = deprecated.CATALOGUE[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            with deprecated.silenced(name):
                USES[name](tmp_path)
        except Warning as w:
            pytest.fail(f"{name} ({'; '.join(family.apis)}) warns what bench/deprecated.py does "
                        f"not list, under torch {torch.__version__}: {type(w).__name__}: "
                        f"{str(w).splitlines()[0]}")
        except Exception as exc:  # noqa: BLE001 - the cause, named
            pytest.fail(f"{name} ({'; '.join(family.apis)}) fails under torch "
                        f"{torch.__version__}: {type(exc).__name__}: {exc}. It stays because: "
                        f"{family.why}")


def test_a_warning_outside_the_list_is_not_silenced():
    with pytest.warns(UserWarning, match="medbench test"), deprecated.silenced(*deprecated.CATALOGUE):
        warnings.warn(OTHER, UserWarning, stacklevel=1)
    with pytest.warns(DeprecationWarning, match="another API"), deprecated.silenced(*deprecated.CATALOGUE):
        warnings.warn("another API is deprecated", DeprecationWarning, stacklevel=1)


def test_pytest_silences_no_warning_category_wholesale():
    root = Path(__file__).resolve().parents[2]
    options = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    wholesale = [f for f in options.get("filterwarnings", [])  # action:message:category:...
                 if f.split(":")[0] == "ignore" and not (f.split(":") + [""])[1].strip()]
    assert not wholesale, f"pytest ignores whole warning categories: {wholesale}"


# -- where the project calls them: only the listed warnings are silenced ---------------------

def _also_warns(monkeypatch, owner, attr: str, call_through: bool = True) -> None:
    """`owner.attr` warns OTHER, then does what it did (or nothing)."""
    original = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        warnings.warn(OTHER, UserWarning, stacklevel=2)
        return original(*args, **kwargs) if call_through else None

    monkeypatch.setattr(owner, attr, wrapper)


def _torch_save(monkeypatch, env, tmp_path):
    from bench.backends.torch_backend import TorchBackend

    _also_warns(monkeypatch, torch.jit, "trace")
    TorchBackend().save(Realised(TinyNet().eval()), tmp_path, env)


def _torch_load(monkeypatch, env, tmp_path):
    from bench.backends.torch_backend import TorchBackend

    deployed = TorchBackend().save(Realised(TinyNet().eval()), tmp_path, env)
    _also_warns(monkeypatch, torch.jit, "load")
    TorchBackend().load([str(f) for f in deployed.files], 1)


def _onnx(monkeypatch, env, tmp_path):
    from bench.backends.onnx_export import export_onnx

    _also_warns(monkeypatch, torch.onnx, "export")
    export_onnx(TinyNet(), tmp_path / "model.onnx", 16)


def _fx_dynamic(monkeypatch, env, tmp_path):
    from methods.quant import torch_fx

    _also_warns(monkeypatch, torch.ao.quantization, "quantize_dynamic")
    torch_fx.dynamic(TinyNet())


def _fx_static(attr):
    def site(monkeypatch, env, tmp_path):
        import torch.ao.quantization.quantize_fx as fx

        from methods.quant import torch_fx

        _also_warns(monkeypatch, fx, attr)
        torch_fx.static(TinyNet(), env.calibration[:8], 16)
    return site


def _qat(attr):
    def site(monkeypatch, env, tmp_path, tiny_teacher, tiny_context):
        import torch.ao.quantization.quantize_fx as fx

        _also_warns(monkeypatch, fx, attr)
        quantized(tiny_teacher, tiny_context, "quant.qat", epochs=0.3, calibration_size=8)
    return site


def _macs(monkeypatch, env, tmp_path):
    import torch_pruning as tp

    from bench.modelling.architectures import count_macs

    _also_warns(monkeypatch, tp.utils, "count_ops_and_params")
    count_macs(TinyNet(), 16)


def _export_load(monkeypatch, env, tmp_path):
    from bench.backends.torch_export_backend import TorchExportBackend

    backend = TorchExportBackend()
    deployed = backend.save(Realised(TinyNet().eval()), tmp_path, env)
    _also_warns(monkeypatch, torch.export, "load")
    backend.load([str(f) for f in deployed.files], 1)(np.zeros((1, 3, 16, 16), np.float32))


def _aoti_compile(monkeypatch, env, tmp_path):
    import torch._inductor

    from bench.backends.torch_export_backend import TorchAOTIBackend

    # the compile itself is not run (tens of seconds): only what surrounds it
    _also_warns(monkeypatch, torch._inductor, "aoti_compile_and_package", call_through=False)
    TorchAOTIBackend().save(Realised(TinyNet().eval()), tmp_path, env)


SITES = {"torch backend: save": _torch_save, "torch backend: load": _torch_load,
         "fp32 ONNX export": _onnx, "FX dynamic int8": _fx_dynamic,
         "FX static int8: prepare": _fx_static("prepare_fx"),
         "FX static int8: convert": _fx_static("convert_fx"),
         "FX QAT: prepare": _qat("prepare_qat_fx"), "FX QAT: convert": _qat("convert_fx"),
         "MACs": _macs, "torch-export: load": _export_load, "torch-aoti: compile": _aoti_compile}


@pytest.mark.parametrize("site", list(SITES))
def test_other_warnings_pass_where_a_deprecated_api_is_called(site, monkeypatch, env, tmp_path,
                                                              tiny_teacher, tiny_context):
    call = SITES[site]
    extra = (tiny_teacher, tiny_context) if site.startswith("FX QAT") else ()
    with pytest.warns(UserWarning, match="medbench test"):
        call(monkeypatch, env, tmp_path, *extra)
