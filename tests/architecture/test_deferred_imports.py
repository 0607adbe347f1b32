"""An import inside a function only defers a heavy or optional dependency: one listed in
pyproject.toml's `[tool.medbench] deferred_imports`, or a module of this project whose own
top-level imports reach one (it is the way to that dependency). Every other import sits at
the top of its module, where a reader (and import-linter) sees it.

Why defer at all: Ray, Optuna and the edge runtimes stay optional; a measuring process
(bench.child) loads only the runtime it measures, since its memory is a measured figure;
and `bench list`, `compare`, `check`, `report` and `--help` load no runtime (they do load
torch: bench.task_kinds, which the configuration reaches, is built on it).
"""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "methods", "reports")
DEFERRED = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["medbench"]
               ["deferred_imports"])


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(module: str):
    """(imported module, line, inside a function) for every import that runs (those under
    `if TYPE_CHECKING:` never do)."""
    path = MODULES[module]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package
                    pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    base = ".".join(pkg[:len(pkg) - child.level + 1] + ([base] if base else []))
                found.extend((f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base,
                              child.lineno, in_function) for a in child.names)
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return found


TOP_LEVEL = {m: {name for name, _, inside in _imports(m) if not inside} for m in MODULES}


def _reaches_deferred(module: str, seen: set) -> bool:
    """Whether importing `module` imports a deferred dependency (through its package's
    __init__ and its own top-level imports)."""
    if module in seen:
        return False
    seen.add(module)
    parents = {module.rsplit(".", 1)[0]} if "." in module else set()
    for name in TOP_LEVEL[module] | parents:
        if name.split(".")[0] in DEFERRED:
            return True
        if name in MODULES and _reaches_deferred(name, seen):
            return True
    return False


def test_imports_inside_functions_only_defer_a_heavy_or_optional_dependency():
    wrong = []
    for module in sorted(MODULES):
        for name, line, inside in _imports(module):
            if not inside or name.split(".")[0] in DEFERRED:
                continue
            if name in MODULES and _reaches_deferred(name, set()):
                continue
            wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {name}")
    assert not wrong, ("imports inside functions that defer nothing heavy (move them to the "
                       "top of the module):\n" + "\n".join(wrong))


def test_the_list_names_only_installed_third_party_packages():
    import importlib.util

    assert not DEFERRED & set(PACKAGES)
    required = {"torch", "torchvision", "onnxruntime", "openvino", "pandas", "seaborn"}
    assert required <= DEFERRED
    optional = {"timm", "executorch", "litert_torch", "ai_edge_litert", "ray", "optuna"}
    for name in sorted(DEFERRED - optional):
        assert importlib.util.find_spec(name) is not None, name
