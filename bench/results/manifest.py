"""The run's manifest: the command, the configuration, versions, machine and commit, so
a reader can tell what produced every figure in the run directory."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import __version__
from bench.results import machines, model_code
from bench.results.machines import version_of

#: packages whose versions every manifest records (import name -> distribution)
PACKAGES = {"torchvision": "torchvision", "torch_pruning": "torch-pruning", "numpy": "numpy",
            "sklearn": "scikit-learn", "onnxruntime": "onnxruntime", "openvino": "openvino",
            "codecarbon": "codecarbon"}


def initial(cfg) -> dict:
    import torch

    versions = {"bench": __version__, "python": platform.python_version(), "torch": torch.__version__}
    versions.update({pkg: version_of(dist) for pkg, dist in PACKAGES.items()})
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": cfg.to_dict(),
        "image_size": cfg.data.image_size,
        "versions": versions,
        "machine": machines.hardware(),
        "git_commit": git_commit(),
        # what the gate's baseline is keyed by (bench.results.model_code)
        "model_code": model_code.fingerprint(),
    }


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=root)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, cwd=root).stdout.strip()
        return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
