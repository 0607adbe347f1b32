"""Third-party plugins: a distribution built and installed in a temporary directory adds a
method, a backend and a dataset format through its entry points alone, and `bench list`
and a `--quick` run use them, with no file of the project edited."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.plugin_dist import install_plugin

METHOD = '''
"""A method from outside the project: weights rounded to bfloat16 precision, kept in fp32
(the accuracy cost of bf16 storage, measured on every backend)."""
import time

import torch

from bench.modelling.architectures import clone
from methods import register
from methods.base import Artifact, Method, Param


@register
class RoundWeights(Method):
    name = "demo.round_bf16"
    summary = "weights rounded to bfloat16 and back (a plugin's method)"
    params = (Param("keep_classifier", bool, True, "true: leave the last Linear layer alone"),)

    def apply(self, parent, ctx, keep_classifier):
        start = time.perf_counter()
        model = clone(parent.module).eval()
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not (
                        keep_classifier and m is last):
                    m.weight.copy_(m.weight.to(torch.bfloat16).float())
        return Artifact(name=self.name, arch=parent.arch, module=model, float_module=model,
                        notes=("weights rounded to bf16",),
                        seconds=parent.seconds + time.perf_counter() - start)
'''

BACKEND = '''
"""A backend from outside the project: torch.export's ExportedProgram (.pt2), named
demo-pt2 (`torch-export` is the bench's own backend since issue 13)."""
from pathlib import Path

import numpy as np

from bench.backends import Backend, Deployed


class TorchExportBackend(Backend):
    name = "demo-pt2"
    runtime = "medbench_demo"  # its runtime code is this plugin's (on torch.export)
    deploys = "torch.export ExportedProgram (.pt2), dynamic batch"
    settings = "torch.set_num_threads({threads}), no_grad"

    def float_graph(self, module, env):
        return module.eval()

    def save(self, realised, out_dir, env, precision="fp32"):
        import torch

        if precision != "fp32":
            from bench.backends import NotApplicable
            raise NotApplicable("the demo backend deploys fp32 only")
        example = torch.zeros(2, 3, env.image_size, env.image_size)
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.export.export(realised.graph, (example,), dynamic_shapes=({0: batch},))
        path = Path(out_dir) / "model.pt2"
        torch.export.save(program, str(path))
        return Deployed([path], realised.precision, list(realised.notes))

    def load(self, files, threads, device="cpu", options=None):
        import torch

        torch.set_num_threads(threads)
        module = torch.export.load(str(files[0])).module()

        def predict(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(x)).numpy()

        return predict
'''

FORMAT = '''
"""A dataset format from outside the project: one .npz with images x (N, H, W) uint8
and integer labels y (N,)."""
import numpy as np

from bench.data.common import make_bundle, stratified_split
from bench.data.formats import FORMATS, Format
from bench.data.images import resize_array
from bench.task_kinds import Task


@FORMATS.register
class DemoNpz(Format):
    name = "demo-npz"
    spec = "demo-npz:FILE.npz"
    expected = "an .npz with x (N, H, W) uint8 images and y (N,) labels 0/1"
    obtain = "the plugin's own generator"

    def load(self, path, request):
        with np.load(path) as z:
            x, y = resize_array(z["x"], request.image_size), z["y"].astype(np.int64)
        idx = stratified_split(y, request.seed, {"val": 0.2, "test": 0.2})
        parts = {k: (x[i], y[i]) for k, i in idx.items()}
        return make_bundle("demo-npz", Task("binary", ("normal", "finding")), parts,
                           request.image_size, request.seed, request.calibration,
                           {"format": "demo-npz", "path": str(path)}, {"source": str(path)})
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plugin distribution, built from source and installed with pip into a folder
    of its own (tests/helpers/plugin_dist.py; put on PYTHONPATH by the tests): nothing
    is installed into the project's environment."""
    return install_plugin(
        tmp_path_factory.mktemp("plugin"), "medbench-demo-plugin", "medbench_demo",
        {"method": METHOD, "backend": BACKEND, "format": FORMAT},
        {"medbench.methods": {"demo": "medbench_demo.method"},
         "medbench.backends": {"demo_pt2": "medbench_demo.backend:TorchExportBackend"},
         "medbench.formats": {"demo_npz": "medbench_demo.format"}})


def _bench(args, site: Path, tmp: Path, timeout=900):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(Path.cwd())])}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          env=env, cwd=tmp, timeout=timeout)


@pytest.mark.slow
def test_plugin_is_listed(plugin_site, tmp_path):
    proc = _bench(["list"], plugin_site, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "demo.round_bf16" in out and "demo-pt2" in out and "demo-npz:FILE.npz" in out
    print(out)


@pytest.mark.slow
def test_quick_run_with_plugin_method_backend_and_format(plugin_site, tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 2
    x = rng.integers(0, 120, (300, 32, 32)).astype(np.uint8)
    x[y == 1, 10:22, 10:22] += 100  # the finding: a bright square
    np.savez(tmp_path / "demo.npz", x=x, y=y)
    out = tmp_path / "run"
    proc = _bench(["run", "--quick", "--methods", "demo.round_bf16", "--backends",
                   "demo-pt2,torch", "--dataset", f"demo-npz:{tmp_path / 'demo.npz'}",
                   "--teacher", "resnet18", "--out", str(out), "--no-cache"],
                  plugin_site, tmp_path)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    from bench.results.store import load_rows

    rows = {(r.model, r.backend): r for r in load_rows(out)}
    for backend in ("demo-pt2", "torch"):
        for model in ("teacher", "student", "demo.round_bf16"):
            row = rows[model, backend]
            assert row.ok and row.latency_ms_p50 > 0 and row.auc_roc is not None, row
    plugin = rows["demo.round_bf16", "demo-pt2"]
    assert plugin.parity_max_abs < 1e-3 and "rounded to bf16" in plugin.notes
    assert (out / "artifacts" / "demo.round_bf16" / "demo-pt2" / "model.pt2").exists()
    # the plugin backend's runtime version is recorded with the machine, as the built-ins'
    (machine,) = json.loads((out / "manifest.json").read_text())["machines"].values()
    assert machine["runtimes"]["medbench-demo-plugin"] == "0.1", machine["runtimes"]
    assert machine["runtimes"]["onnxruntime"] and machine["runtimes"]["torch"]
