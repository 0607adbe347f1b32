"""The run's manifest: the command, the configuration, versions, machine and commit, so
a reader can tell what produced every figure in the run directory."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import __version__

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
        "machine": machine(),
        "git_commit": git_commit(),
    }


def version_of(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


#: instruction-set extensions that change which kernels the runtimes pick (so their speed,
#: and training's float rounding): x86 /proc/cpuinfo `flags`, Arm `Features`
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")


def machine() -> dict:
    """CPU (name, vendor, family/model/stepping, the ISA extensions above), cores, memory.

    Under a hypervisor the name can be generic ("Intel(R) Xeon(R) Processor"): the model
    numbers and extensions tell two such machines apart (bench.results.gate keys on them)."""
    import psutil

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    ident = [info.get(k) for k in ("cpu family", "model", "stepping")
             if info.get(k) is not None]
    arm = [info.get(k) for k in ("CPU implementer", "CPU part", "CPU variant")
           if info.get(k) is not None]
    return {"platform": platform.platform(), "cpu": info.get("model name") or platform.processor(),
            "cpu_vendor": info.get("vendor_id") or (info.get("CPU implementer") and "arm") or None,
            "cpu_model_id": "/".join(ident or arm) or None,
            "isa": [f for f in ISA_FLAGS if f in flags],
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def cpu_line(d: dict) -> str:
    """A machine description's CPU in one line: its name, then the vendor, model numbers
    and ISA extensions where recorded (the report and the gate's notes name CPUs so)."""
    ident = " ".join(str(d[k]) for k in ("cpu_vendor", "cpu_model_id") if d.get(k))
    details = "; ".join(p for p in (ident, " ".join(d.get("isa") or [])) if p)
    return f"{d.get('cpu')} ({details})" if details else str(d.get("cpu"))


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


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
