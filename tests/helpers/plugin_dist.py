"""A plugin distribution for tests: built from source in a temporary folder and installed
with pip into a folder of its own, never into the project's environment.

The folder is put on PYTHONPATH by the test, so the plugin's `medbench.*` entry points are
found by every process the test starts (a `bench` command, a fork server, a worker), which
an in-process registration could not reach (tests/registry/test_plugins.py,
tests/measuring/test_faults.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1"
"""


def install_plugin(root: Path, name: str, package: str, modules: dict[str, str],
                   entry_points: dict[str, dict[str, str]]) -> Path:
    """Build the distribution `name` (the package `package` with `modules`: module name ->
    source) declaring `entry_points` (group -> {entry name: target}), install it under
    `root`, and return the folder to put on PYTHONPATH."""
    src = Path(root) / "src"
    pkg = src / package
    pkg.mkdir(parents=True)
    text = PYPROJECT.format(name=name)
    for group, entries in entry_points.items():
        text += f'\n[project.entry-points."{group}"]\n' + "".join(
            f'{key} = "{target}"\n' for key, target in entries.items())
    (src / "pyproject.toml").write_text(text)
    (pkg / "__init__.py").write_text("")
    for module, source in modules.items():
        (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    return install_folder(src, name, root)


def install_folder(src: Path, name: str, root: Path) -> Path:
    """Install the distribution `name` whose source (pyproject.toml and modules) is the
    folder `src` (docs/examples/lowrank, say) under `root`, and return the folder to put
    on PYTHONPATH. The source folder is left as it was: it is copied first."""
    build = Path(root) / "build"
    shutil.copytree(src, build, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = Path(root) / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site), str(build)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip could not install the test plugin: {proc.stderr[-2000:]}")
    dist = name.replace("-", "_")
    if not list(site.glob(f"{dist}-*.dist-info/entry_points.txt")):
        raise RuntimeError(f"the test plugin {name} was installed without its entry points")
    return site
