"""The code that makes the models: a fingerprint the manifest records and the gate's
baseline is keyed by.

Why: issue 21 changed the training rule and landed with the old baseline, because the
gate could not tell that its AUCs and speedups came from other code; the first CI on the
machine they were recorded on failed. A run's manifest now records, per source file that
decides what the bench trains, quantizes or deploys, a hash of its syntax tree with the
docstrings left out (comments and formatting never reach the tree), and the baseline keeps
the one it was recorded with. When they differ, the baseline's per-machine figures belong
to other models: the gate says which files changed and asks for them to be re-recorded, on
whichever machine the change is made (bench.results.gate).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

#: the packages whose code decides the models and their deployed files: the methods, the
#: training, the data, the configuration (defaults, presets), the backends' exports and
#: quantizers, and the pipeline that chains them. Measuring, statistics and reports are
#: left out: they read the models and do not change them.
MODEL_CODE = ("methods", "bench/modelling", "bench/data", "bench/config", "bench/backends",
              "bench/pipeline")
ROOT = Path(__file__).resolve().parents[2]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return tree


def file_hash(source: str) -> str:
    """A source file's code, not its prose: the hash of its syntax tree, docstrings out."""
    try:
        text = ast.dump(_without_docstrings(ast.parse(source)))
    except SyntaxError:
        text = source
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(root: Path = ROOT) -> dict[str, str]:
    """Relative path -> file_hash, for every Python file under MODEL_CODE in `root`."""
    out = {}
    for package in MODEL_CODE:
        for path in sorted((root / package).rglob("*.py")):
            out[path.relative_to(root).as_posix()] = file_hash(path.read_text(encoding="utf-8"))
    return out


def changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The files whose code differs between two fingerprints (added and removed ones too)."""
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


def describe(files: list[str], limit: int = 6) -> str:
    """`a.py, b.py and 3 more`: the changed files as one line."""
    shown = ", ".join(files[:limit])
    return shown + (f" and {len(files) - limit} more" if len(files) > limit else "")
