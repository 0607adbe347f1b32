"""bench.results.saved: the one mechanism by which every stage's output is saved, keyed,
and found again by a resumed run; bench.pipeline.saved_stages: the steps and exports
seeing it as a mapping of what was made."""

import json

import pytest
import torch

import methods
from bench import backends
from bench.modelling.architectures import clone
from bench.pipeline.artifacts import Builder
from bench.pipeline.saved_stages import SavedExports, SavedSteps
from bench.results.saved import SavedOutputs
from tests.helpers import TinyNet


def _keep_one(tmp_path, content=b"weights"):
    outputs = SavedOutputs(tmp_path)
    path = outputs.file_path("steps", "kd+prune.structured:ratio=0.3", ".pt")
    path.write_bytes(content)
    outputs.keep("steps", "kd+prune.structured:ratio=0.3", "k1", [path], arch="tiny")
    return outputs, path


def test_an_output_is_found_again_only_with_its_key_and_whole_files(tmp_path):
    outputs, path = _keep_one(tmp_path)
    record = outputs.find("steps", "kd+prune.structured:ratio=0.3", "k1")
    assert record["arch"] == "tiny" and record["files"] == [str(path.relative_to(tmp_path))]
    assert outputs.find("steps", "kd+prune.structured:ratio=0.3", "k2") is None  # other inputs
    assert outputs.find("steps", "never made", "k1") is None
    path.write_bytes(b"weights, changed")  # a file that no longer hashes as recorded
    assert outputs.find("steps", "kd+prune.structured:ratio=0.3", "k1") is None
    path.unlink()
    assert outputs.find("steps", "kd+prune.structured:ratio=0.3", "k1") is None


def test_a_missing_or_cut_record_is_not_an_output(tmp_path):
    outputs, _ = _keep_one(tmp_path)
    (record,) = (tmp_path / ".resume" / "steps").glob("*.json")
    record.write_text(record.read_text()[:20])  # cut mid-write (a kill)
    assert outputs.find("steps", "kd+prune.structured:ratio=0.3", "k1") is None
    outputs.clear()
    assert not (tmp_path / ".resume").exists()


def _artifact(name, width=4):
    torch.manual_seed(0)
    m = TinyNet(width=width).eval()
    return methods.Artifact(name=name, arch="tiny", module=m, float_module=m,
                            notes=("a note",), seconds=1.5, train_steps=7)


def _steps(tmp_path, ctx, seed=0):
    return SavedSteps(SavedOutputs(tmp_path), {"seed": seed}, _artifact("teacher"), ctx)


def test_a_saved_step_comes_back_as_the_same_model(tmp_path, tiny_context):
    (chain,) = methods.expand("prune.magnitude")
    steps = _steps(tmp_path, tiny_context)
    made = _artifact("prune.magnitude")
    steps[chain] = made
    again = _steps(tmp_path, tiny_context)  # the next attempt
    assert chain in again
    back = again[chain]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(back.module(x), made.module(x))
    assert (back.notes, back.seconds, back.train_steps) == (("a note",), 1.5, 7)
    assert chain not in _steps(tmp_path, tiny_context, seed=1)  # another seed's key


class _Wrap(methods.Method):
    """A method whose model is not its parent's structure: the parent inside a Sequential."""

    name = "demo.wrap"

    def restore(self, parent, ctx, state, **params):
        model = torch.nn.Sequential(clone(parent.module), torch.nn.Identity())
        model.load_state_dict(state)
        return model


def test_a_restructured_step_comes_back_through_its_methods_restore(tmp_path, tiny_context,
                                                                    monkeypatch):
    """Each saved step is rebuilt by its own method from its parent, itself found first:
    a chain of two restructured steps comes back as it was made; a method whose model
    the default cannot rebuild is made again, not a crash."""
    monkeypatch.setattr(methods, "get", lambda name: _Wrap)
    one = (methods.Step("demo.wrap", ()),)
    two = one + (methods.Step("demo.wrap", (("n", 2),)),)
    first = torch.nn.Sequential(_artifact("teacher").module, torch.nn.Identity()).eval()
    second = torch.nn.Sequential(first, torch.nn.Identity()).eval()
    steps = _steps(tmp_path, tiny_context)
    steps[one] = methods.Artifact(name="demo.wrap", arch="tiny", module=first, float_module=first)
    steps[two] = methods.Artifact(name="w", arch="tiny", module=second, float_module=second)
    again = _steps(tmp_path, tiny_context)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(again[two].module(x), second(x))
    assert again.made[one].module is not first  # the parent was rebuilt on the way

    class Default(methods.Method):
        name = "demo.wrap"

    monkeypatch.setattr(methods, "get", lambda name: Default)
    assert two not in _steps(tmp_path, tiny_context)


def test_the_builder_applies_only_the_steps_not_already_made(tmp_path, tiny_context, monkeypatch):
    """A chain whose prefix was saved by an earlier attempt applies only its last step."""
    applied = []
    real = methods.get("quant.dynamic").apply

    def counting(self, parent, ctx, **params):
        applied.append(parent.name)
        return real(self, parent, ctx, **params)

    monkeypatch.setattr(methods.get("quant.dynamic"), "apply", counting)
    builder = Builder.__new__(Builder)
    builder.ctx = tiny_context
    builder.teacher = _artifact("teacher")
    (kd,) = methods.expand("kd")
    (chain,) = methods.expand("kd+quant.dynamic")
    builder.made = {kd: _artifact("kd")}  # as a SavedSteps holding the saved kd
    made = builder.chain(chain)
    assert applied == ["kd"] and made.steps[-1].method == "quant.dynamic"
    assert builder.chain(chain) is made and applied == ["kd"]  # made once


def test_an_export_is_recorded_and_found_while_its_files_are_whole(tmp_path):
    outputs = SavedOutputs(tmp_path)
    folder = tmp_path / "artifacts" / "kd" / "onnxruntime"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"graph")
    deployed = SavedExports(outputs)
    deployed["kd/onnxruntime"] = backends.Deployed([folder / "model.onnx"], "int8", ["n"],
                                                   {"threads": 1}, seconds=2.5, train_steps=6)
    again = SavedExports(SavedOutputs(tmp_path))
    assert "kd/onnxruntime" in again and "kd/torch" not in again
    assert again["kd/onnxruntime"].precision == "int8"
    # what the realisation cost when deployed comes back with it (the row's cost adds it)
    assert (again["kd/onnxruntime"].seconds, again["kd/onnxruntime"].train_steps) == (2.5, 6)
    record = again.manifest_records()["kd/onnxruntime"]
    assert record["files"] == ["artifacts/kd/onnxruntime/model.onnx"]
    assert set(record) == {"files", "sha256", "precision", "notes", "options", "seconds",
                           "train_steps"}
    json.dumps(record)
    (folder / "model.onnx").write_bytes(b"another graph")
    assert "kd/onnxruntime" not in SavedExports(SavedOutputs(tmp_path))
    with pytest.raises(KeyError):
        SavedExports(SavedOutputs(tmp_path))["kd/onnxruntime"]


def test_each_step_is_applied_knowing_its_chains_name(tiny_context, monkeypatch):
    """A chained step's progress lines can say `kd+quant.dynamic`, not only its method's."""
    seen = []
    real = methods.get("quant.dynamic").apply

    def spy(self, parent, ctx, **params):
        seen.append(ctx.chain)
        return real(self, parent, ctx, **params)

    monkeypatch.setattr(methods.get("quant.dynamic"), "apply", spy)
    builder = Builder.__new__(Builder)
    builder.ctx, builder.teacher = tiny_context, _artifact("teacher")
    (kd,) = methods.expand("kd")
    builder.made = {kd: _artifact("kd")}
    builder.chain(methods.expand("kd+quant.dynamic")[0])
    builder.chain(methods.expand("quant.dynamic")[0])
    assert seen == ["kd+quant.dynamic", "quant.dynamic"] and tiny_context.chain == ""
