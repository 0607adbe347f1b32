"""docs/architecture.md names every package and module of bench/, methods/ and reports/:
by its path (`bench/cache.py`), or as `name.py` on a line that names its package's
folder (`bench/stats/` ... `delong.py`). A module added without a word there fails."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _named(module: Path) -> bool:
    rel = module.relative_to(ROOT)
    if module.name == "__init__.py":  # a package: its folder
        return f"{rel.parent}/" in DOC or f"`{rel.parent}`" in DOC
    if str(rel) in DOC:
        return True
    folder = f"{rel.parent}/"
    return any(folder in line and f"`{module.name}`" in line for line in DOC.splitlines())


def test_architecture_names_every_module():
    modules = [m for pkg in ("bench", "methods", "reports") for m in sorted((ROOT / pkg).rglob("*.py"))
               if m.name != "__main__.py"]
    missing = [str(m.relative_to(ROOT)) for m in modules if not _named(m)]
    assert not missing, f"docs/architecture.md does not name: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    import re

    text = re.sub(r"[^\w\- ]", "", heading.strip().lstrip("#").strip().lower())
    return text.replace(" ", "-")


def test_every_link_between_the_readme_and_docs_resolves():
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    anchors = {p: {_slug(line) for line in p.read_text().splitlines() if line.startswith("#")}
               for p in pages}
    broken = []
    for page in pages:
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if link.startswith(("http://", "https://")):
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists() or (anchor and target.suffix == ".md"
                                       and anchor not in anchors.get(target, set())):
                broken.append(f"{page.name}: {link}")
    assert not broken, broken


def test_the_import_contracts_hold():
    """pyproject.toml's import-linter contracts: the layers, backends never importing
    methods, and no cycle between the modules or subpackages of a package."""
    import shutil
    import subprocess

    import pytest

    lint = shutil.which("lint-imports") or pytest.skip("import-linter not installed")
    out = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
