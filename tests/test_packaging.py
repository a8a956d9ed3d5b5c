"""Packaging: a non-editable install ships the presets, and every imported package is declared."""

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_non_editable_install_finds_the_builtin_presets(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import lnl_cli, lnl_cli.preset_files as c; print(lnl_cli.__file__); "
                               "print(sorted(c.builtin_presets()))"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=120)
    assert probe.returncode == 0, probe.stderr
    module_path, names = probe.stdout.strip().splitlines()
    assert module_path.startswith(str(target))
    assert "colored-mnist" in names and "colored-mnist-paper" in names


def test_every_package_of_lnl_cli_is_in_the_wheel():
    """pyproject.toml lists the packages one by one: a new subpackage (lnl_cli/sweep/) must be among them,
    or a non-editable install lacks it."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "lnl_cli").rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"


# Folders whose Python files may import only the standard library, the project and declared packages.
IMPORTING_FOLDERS = ("lnl_cli", "benchmarks", "tests")
PROJECT_MODULES = {"lnl_cli", "benchmarks", "tests"}


def _normalised(name: str) -> str:
    """PEP 503 name: what pip compares (PyYAML == pyyaml, concept_erasure == concept-erasure)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared_distributions() -> set[str]:
    """Every distribution pyproject.toml names, in the dependencies or in any extra."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalised(re.match(r"[A-Za-z0-9_.-]+", requirement).group()) for requirement in requirements}


def _imported_top_level_modules() -> dict[str, set[str]]:
    """Absolute imports of every Python file in IMPORTING_FOLDERS: top-level module -> files importing it.
    A script folder's own sibling modules (benchmarks/stats.py imported as `stats`) count as the project."""
    found: dict[str, set[str]] = {}
    for folder in IMPORTING_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            siblings = {p.stem for p in path.parent.glob("*.py")}
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PROJECT_MODULES and top not in siblings:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_the_import_scan_sees_third_party_imports():
    """The scan below is only worth something if it finds the packages the code is known to import."""
    imported = _imported_top_level_modules()
    assert {"torch", "typer", "yaml", "pytest"} <= set(imported)
    assert not {"os", "lnl_cli", "json"} & set(imported)


def test_every_third_party_module_imported_is_declared_in_pyproject():
    """A fresh environment installs only what pyproject.toml declares: a module that some other package
    happened to bring along (click, once typer's) breaks every new clone while an old machine stays green."""
    declared = _declared_distributions()
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_imported_top_level_modules().items()):
        distributions = {_normalised(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed here")
        elif not distributions & declared:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) comes from {sorted(distributions)}, "
                            "which pyproject.toml does not declare")
    assert not problems, "\n".join(problems)
