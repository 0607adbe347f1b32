"""The machine, in one place: what this machine is (`hardware`, `describe_machine`, read
where the measuring happens: on a Ray node, on that node), the short key rows carry in
their `machine` column, the class two machines must share for their speedups and AUCs to
be compared (the gate), and the one-line forms the gate's notes and the report print.
The runtimes recorded come from the backend registry, so a plugin backend's are too.
"""

from __future__ import annotations

import platform
from importlib import metadata

import psutil

from bench.backends import BACKENDS, runtime_distributions


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


#: instruction-set extensions that change which kernels the runtimes pick (so their speed,
#: and training's float rounding): x86 /proc/cpuinfo `flags`, Arm `Features`
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")


def hardware() -> dict:
    """CPU (name, vendor, family/model/stepping, the ISA extensions above), cores, memory.

    Under a hypervisor the name can be generic ("Intel(R) Xeon(R) Processor"): the model
    numbers and extensions tell two such machines apart (machine_class keys on them)."""
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


def describe_machine(**extra) -> dict:
    """This machine as a row's reader needs it: CPU, cores, OS, architecture and the
    versions of torch and every registered backend's runtime installed here (a plugin
    backend's too), read here (on a Ray node: on that node)."""
    return {"hostname": platform.node(), **hardware(), "architecture": platform.machine(),
            "python": platform.python_version(),
            "runtimes": {d: v for d in runtime_distributions() if (v := version_of(d))},
            **extra}


def machine_key(description: dict) -> str:
    """The short name rows carry in their `machine` column (the manifest's `machines` key)."""
    node = description.get("ray_node_id")
    return description["hostname"] + (f" (ray node {node[:8]})" if node else "")


#: a machine's description fields (describe_machine) that must be
#: equal for two machines' speedups and AUCs to be compared; runtimes both record must too
MACHINE_FIELDS = ("cpu", "cpu_vendor", "cpu_model_id", "isa", "architecture", "logical_cores")


def machine_class(description: dict | None) -> dict | None:
    """What of a machine's description decides its speedups and AUCs (MACHINE_FIELDS and
    the runtimes' versions); None for a description without the CPU's model numbers (runs
    made before they were recorded, hand-made rows)."""
    if not isinstance(description, dict) or not description.get("cpu_model_id"):
        return None
    return {**{f: description.get(f) for f in MACHINE_FIELDS},
            "runtimes": dict(description.get("runtimes") or {})}


def same_machine(a: dict | None, b: dict | None, runtimes: set[str] | None = None) -> bool:
    """Equal MACHINE_FIELDS, and equal versions of every runtime both record (of those in
    `runtimes`, where given)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if any(a.get(f) != b.get(f) for f in MACHINE_FIELDS):
        return False
    ra, rb = a.get("runtimes") or {}, b.get("runtimes") or {}
    both = ra.keys() & rb.keys() & (runtimes if runtimes is not None else ra.keys())
    return all(ra[k] == rb[k] for k in both)


def runtimes_of(backend: str) -> set[str] | None:
    """The distributions whose versions a backend's rows depend on: torch, which trains
    every model, and the backend's runtime (so installing an edge runtime, or upgrading
    one, leaves the other backends' figures gated); None (all) for an unknown backend."""
    if backend not in BACKENDS:
        return None
    return set(runtime_distributions([backend]))


def machine_name(machine: dict | None) -> str:
    """A machine class in one line, as the gate's notes name it."""
    if not machine:
        return "a machine the run does not describe (no CPU model numbers in its manifest)"
    runtimes = ", ".join(f"{k} {v}" for k, v in (machine.get("runtimes") or {}).items())
    return (f"{cpu_line(machine)}, {machine.get('architecture')}, "
            f"{machine.get('logical_cores')} cores; {runtimes}")


def machine_line(d: dict | None) -> str:
    """A machine's description in one line: CPU, cores, OS, architecture, runtimes."""
    if not d:
        return ""
    runtimes = ", ".join(f"{k} {v}" for k, v in _mapping(d.get("runtimes")).items())
    where = f"; Ray node {d['ray_node_id'][:8]} at {d['ip']}" if d.get("ray_node_id") else ""
    lost = f"; LOST: {d['lost']}" if d.get("lost") else ""
    return (f"{cpu_line(d)}, {d.get('physical_cores')} cores, {d.get('architecture')}, "
            f"{d.get('platform')}; {runtimes}{where}{lost}")


def _mapping(v) -> dict:
    return v if isinstance(v, dict) else {}
