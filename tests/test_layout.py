"""The shape of the package: who may import whom, and registries that agree with the config schema."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from lnl_cli import config, models
from lnl_cli.algorithms import ALGORITHMS
from lnl_cli.data import DATASETS

PACKAGE = Path(config.__file__).resolve().parent
REPO = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """lnl_cli modules that `path` imports anywhere (functions included), except under TYPE_CHECKING.
    ``from package import name`` counts as importing ``package.name`` when that is a module."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_there_is_no_import_circle():
    graph = _graph()
    circles = sorted(name for name in graph if name in _reachable(graph, name))
    assert not circles, f"modules that import themselves through others: {circles}"


def test_the_cli_reaches_the_core_only_through_the_api():
    graph = _graph()
    allowed = {"lnl_cli.api", "lnl_cli.errors"}
    for name, imported in graph.items():
        if name.startswith("lnl_cli.cli"):
            outside = {m for m in imported if not m.startswith("lnl_cli.cli")} - allowed
            assert not outside, f"{name} imports {sorted(outside)}; go through lnl_cli.api"


@pytest.mark.parametrize("module", ["lnl_cli.evaluation", "lnl_cli.probe", "lnl_cli.metrics"])
def test_evaluation_and_probing_do_not_need_the_training_engine(module):
    assert "lnl_cli.engine" not in _reachable(_graph(), module)


def test_no_test_file_imports_another():
    """Shared helpers live in tests/helpers.py and tests/conftest.py: a test file that imports another ties
    the two together (renaming or splitting one breaks the other, and running one file imports the other)."""
    tests = Path(__file__).resolve().parent
    test_modules = {path.stem for path in tests.glob("test_*.py")}
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [f"{path.name}:{node.lineno} imports {name}" for name in names
                      if name.split(".")[0] in test_modules]
    assert not found, f"move what they share into tests/helpers.py: {found}"


def _choices(key: str) -> tuple:
    return typing.get_args(config.SPECS[key].type)


def test_allowed_config_values_are_the_registry_keys():
    assert _choices("data.type") == tuple(DATASETS)
    assert _choices("model.backbone") == tuple(models.BACKBONES)
    assert _choices("method") == tuple(ALGORITHMS)
    assert _choices("model.bias_head") == ("auto", *models.BIAS_HEADS)


def test_every_dataset_option_is_a_data_key():
    for name, spec in DATASETS.items():
        for key in (s.key for s in config.collect_specs(spec.options, "data.")):
            assert key in config.SPECS, f"{name}'s option {key} is not in the config"


TOY_DATASET = '''
"""A toy dataset: noise images whose label is also the bias in training (for the layout test)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lnl_cli.data.base import BiasedDataset, BiasedSplit, DatasetSpec
from lnl_cli.schema import option


@dataclass
class ToyOptions:
    toy_images: int = option(64, "toy: images per split", min=8)


def _split(n: int, aligned: bool, generator: torch.Generator) -> BiasedSplit:
    labels = torch.randint(0, 2, (n,), generator=generator)
    bias = labels.clone() if aligned else torch.randint(0, 2, (n,), generator=generator)
    images = torch.randint(0, 256, (n, 3, 28, 28), generator=generator, dtype=torch.uint8)
    return BiasedSplit(images, labels, bias)


def load(config, with_train: bool = True) -> BiasedDataset:
    generator = torch.Generator().manual_seed(config.data.seed)
    n = config.data.toy_images
    return BiasedDataset(train=_split(n, True, generator), test=_split(n, False, generator), num_classes=2,
                         num_bias_classes=2, bias_bins=0, mean=(0.5,) * 3, std=(0.25,) * 3, description="toy noise")


DATASET = DatasetSpec(summary="toy (noise)", options=ToyOptions, load=load)
'''


@pytest.mark.slow
def test_a_new_dataset_needs_only_its_module_and_a_registry_line(tmp_path):
    """Copy the package, add data/toy.py and one registry entry, and train on it through the CLI:
    nothing else (config schema, engine, CLI) needs to know the dataset."""
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "lnl_cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "presets", copy / "presets")
    (copy / "lnl_cli" / "data" / "toy.py").write_text(TOY_DATASET)
    registry = copy / "lnl_cli" / "data" / "__init__.py"
    text = registry.read_text()
    text = text.replace("from lnl_cli.data import celeba, colored_mnist, manifest",
                        "from lnl_cli.data import celeba, colored_mnist, manifest, toy")
    text = text.replace('    "celeba": celeba.DATASET,\n', '    "celeba": celeba.DATASET,\n    "toy": toy.DATASET,\n')
    registry.write_text(text)

    def lnl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from lnl_cli.cli import main; main()", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    out = tmp_path / "run"
    trained = lnl("train", "data.type=toy", "data.toy_images=32", "method=baseline", "train.epochs=1",
                  "train.select=last", "train.batch_size=16", "--out", str(out), "--json")
    assert trained.returncode == 0, trained.stderr
    assert "toy_images: 32" in (out / "config.yaml").read_text()
    assert '"dataset": "toy noise"' in trained.stdout
    refused = lnl("train", "data.type=toy", "data.toy_images=1", "--out", str(tmp_path / "bad"))
    assert refused.returncode == 2 and "data.toy_images" in refused.stderr
