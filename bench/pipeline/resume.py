"""Continuing a killed run: what a run directory already holds, and whether it may be used.

A run directory is resumable while its manifest has no `wall_seconds` (written last).
Running again with the same `--out` and the same configuration continues it:

  * the models each method step built are kept under RUN/.resume/steps as weights
    (a state_dict, loaded weights-only) with their sha256 in a JSON record beside them;
    a step whose record and file agree is loaded, not rebuilt (a trained student, a
    pruned and fine-tuned model); int8 steps are cheap and deterministic, so made again;
  * every deployed file's sha256 is recorded once its export finished (manifest
    `exports`); a cell whose files still match is not exported again;
  * every measuring process's figures are kept beside its raw samples
    (RUN/latency/<stem>.processes.json); a row's processes and predictions are restored,
    so a row that finished its first pass is not measured again.

Every file here is written atomically (a temporary file, then os.replace), so a kill
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from bench.progress import log

#: configuration sections that do not change what a run measures
IGNORED = ("output", "execution")


class RunDirectory:
    """The resumable state of one run directory (empty for a new run)."""

    def __init__(self, root: Path, manifest: dict | None):
        self.root = Path(root)
        self.manifest = manifest or {}
        self.steps = self.root / ".resume" / "steps"

    @property
    def resuming(self) -> bool:
        return bool(self.manifest)

    # ------------------------------------------------------------------ method steps

    def load_step(self, name: str, key: str):
        """The saved module of step `name` (a chain prefix), or None."""
        import torch

        meta_path, weights = self._step_paths(name)
        try:
            meta = json.loads(meta_path.read_text())
            data = weights.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("key") != key or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            log(f"{name}: the saved step does not match (changed or half-written); rebuilding")
            return None
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return meta, state

    def save_step(self, name: str, key: str, state: dict, meta: dict) -> None:
        import torch

        from bench.cache import atomic_write_bytes

        meta_path, weights = self._step_paths(name)
        weights.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        atomic_write_bytes(weights, data)
        atomic_write_bytes(meta_path, json.dumps(
            {**meta, "key": key, "sha256": hashlib.sha256(data).hexdigest()}).encode())

    def _step_paths(self, name: str) -> tuple[Path, Path]:
        from bench.results.store import safe_name

        stem = safe_name(name)  # "prune.magnitude": not a suffix to replace
        return self.steps / f"{stem}.json", self.steps / f"{stem}.pt"

    # ------------------------------------------------------------------ exports

    def export_record(self, cell: str) -> dict | None:
        """The recorded export of a (model, backend, variant) cell whose files still
        hash as recorded, or None."""
        record = (self.manifest.get("exports") or {}).get(cell)
        if not record:
            return None
        for rel, digest in zip(record["files"], record["sha256"], strict=True):
            try:
                if file_sha256(self.root / rel) != digest:
                    return None
            except OSError:
                return None
        return record


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_run(root: Path, config: dict) -> RunDirectory:
    """The run directory for a run of `config` (its manifest's form): new, or an
    unfinished run of the same configuration to continue. One-line ValueError for a
    finished run or a different configuration."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        return RunDirectory(root, None)
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); choose another --out") from None
    if "wall_seconds" in manifest:
        raise ValueError(f"{root}: holds a finished run (created {manifest.get('created')}); "
                         "choose another --out")
    old = {k: v for k, v in (manifest.get("config") or {}).items() if k not in IGNORED}
    new = {k: v for k, v in _as_json(config).items() if k not in IGNORED}
    diffs = differences(old, new)
    if diffs:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diffs[:3])
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise ValueError(f"{root}: holds an unfinished run of another configuration: "
                         f"{shown}{more}; give the same options to continue it, or another --out")
    return RunDirectory(root, manifest)


def differences(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if old == new else [(prefix, old, new)]


def _as_json(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))


def restore(arch: str, num_outputs: int, state: dict):
    """`arch` with the weights of `state`, whose layers may have fewer channels than the
    architecture's (a channel-pruned model): each Conv2d, BatchNorm2d and Linear is
    resized to the saved shapes first, as torch-pruning resized it, then the state is
    loaded. Only tensors are read: nothing from the file is executed."""
    import torch
    from torch import nn

    from bench.modelling.architectures import build

    model = build(arch, num_outputs)
    for name, module in model.named_modules():
        w = state.get(f"{name}.weight" if name else "weight")
        if w is None or tuple(w.shape) == tuple(getattr(module, "weight", w).shape):
            continue
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            module.out_channels = w.shape[0]
            module.groups = w.shape[0] if depthwise else module.groups
            module.in_channels = w.shape[1] * module.groups
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = w.shape[0]
            module.running_mean = torch.zeros(w.shape[0])
            module.running_var = torch.ones(w.shape[0])
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = w.shape
        else:
            continue
        module.weight = nn.Parameter(torch.empty_like(w))
        if getattr(module, "bias", None) is not None:
            module.bias = nn.Parameter(torch.empty(w.shape[0]))
    model.load_state_dict(state)
    return model.eval()
