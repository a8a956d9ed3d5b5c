"""The shape of the package: who may import whom, and registries that agree with the config schema."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from lnl_cli import config, models
from lnl_cli.algorithms import ALGORITHMS
from lnl_cli.data import DATASETS

from helpers import package_copy_with

PACKAGE = Path(config.__file__).resolve().parent
REPO = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, modules: set[str], type_checking: bool = False) -> set[str]:
    """lnl_cli modules that `path` imports anywhere (functions included), except under TYPE_CHECKING (with
    `type_checking`: only those under TYPE_CHECKING, for annotations).
    ``from package import name`` counts as importing ``package.name`` when that is a module."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]

    def visit(node: ast.AST, in_block: bool = False) -> None:
        if _is_type_checking_block(node):
            if not type_checking:
                return
            in_block = True
        if in_block != type_checking:
            pass
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child, in_block)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in modules}


def _graph(type_checking: bool = False) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files), type_checking) for name, path in files.items()}


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


# The layers of the package, lowest first. A module may import modules of its own layer and of the layers
# below, never of a layer above; it belongs to the layer of the longest prefix naming it (a prefix names a
# module and everything under it; the bare package, whose lazy names are the api's, names only itself).
LAYERS = [
    # leaves: import no other lnl_cli module
    ["lnl_cli.errors", "lnl_cli.version", "lnl_cli.safe_yaml", "lnl_cli.result_keys", "lnl_cli.callbacks",
     "lnl_cli.selection", "lnl_cli.export_formats", "lnl_cli.metric_names"],
    # the generic pieces: typed option fields, files, processes, argument checks
    ["lnl_cli.schema", "lnl_cli.fileio", "lnl_cli.runtime", "lnl_cli.arguments"],
    # preset files, the run folder's layout, process groups, TensorBoard, the probe's settings
    ["lnl_cli.preset_files", "lnl_cli.run_folder", "lnl_cli.distributed", "lnl_cli.tensorboard",
     "lnl_cli.probe_settings"],
    # the components and their registries: data sets, and the networks built for them
    ["lnl_cli.data", "lnl_cli.models"],
    ["lnl_cli.algorithms"],
    # the config tree, whose schema is built from the registries below it
    ["lnl_cli.config"],
    # what a run is made of: checkpoints, metrics, what a resume starts from, a model for inference
    ["lnl_cli.checkpoint", "lnl_cli.metrics", "lnl_cli.resume_state", "lnl_cli.inference"],
    # the commands' work
    ["lnl_cli.engine", "lnl_cli.evaluation", "lnl_cli.probe", "lnl_cli.sweep", "lnl_cli.compare", "lnl_cli.plots",
     "lnl_cli.progress", "lnl_cli.environment"],
    # the front doors of the core: the public API, and the dataset builders (python -m lnl_cli.tools.NAME)
    ["lnl_cli.api", "lnl_cli.tools"],
    # the command line, and the package itself
    ["lnl_cli.cli", "lnl_cli.__main__", "lnl_cli"],
]
# A data set, model or method module may name the Config it is given under TYPE_CHECKING, for annotations:
# at run time lnl_cli.config imports their registries (and builds its sections from their options), never
# the reverse. A rule rather than a list, so that a new data set or method still needs only its module and
# a registry line.
TYPE_ONLY_CONFIG = ("lnl_cli.data", "lnl_cli.models", "lnl_cli.algorithms")
# Upward imports that exist today, each named so that no new one slips in; an entry that no longer exists
# fails the test too, so that the list only shrinks.
KNOWN_UPWARD = {
    # annotations only (TYPE_CHECKING): SweepCallbacks' methods receive a sweep Point, while callbacks sits
    # below config (tensorboard, which config imports, implements TrainCallbacks)
    ("lnl_cli.callbacks", "lnl_cli.sweep"),
}


def _layer(module: str) -> int:
    def names(prefix: str) -> bool:
        return module == prefix or (prefix != "lnl_cli" and module.startswith(prefix + "."))

    matches = [(len(prefix), index) for index, layer in enumerate(LAYERS) for prefix in layer if names(prefix)]
    assert matches, f"{module} is in no layer of LAYERS; add it to the layer of what it imports"
    return max(matches)[1]


def _upward_imports() -> set[tuple[str, str]]:
    """(importer, imported) for every import, at run time or under TYPE_CHECKING, of a higher layer's module."""
    upward = set()
    for type_checking in (False, True):
        for name, imported in _graph(type_checking).items():
            for other in imported:
                if _layer(other) <= _layer(name):
                    continue
                if type_checking and other == "lnl_cli.config" and name.startswith(TYPE_ONLY_CONFIG):
                    continue
                upward.add((name, other))
    return upward


def test_every_module_is_in_one_layer():
    for name in _graph():
        _layer(name)
    prefixes = [prefix for layer in LAYERS for prefix in layer]
    assert len(prefixes) == len(set(prefixes)), "a prefix is in two layers"


def test_no_module_imports_a_module_of_a_higher_layer():
    upward = _upward_imports()
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, ("upward imports (importer, imported): " + ", ".join(map(str, new))
                     + "; move the code, or import the other way round")
    gone = sorted(KNOWN_UPWARD - upward)
    assert not gone, f"no longer imported: {gone}; remove them from KNOWN_UPWARD"


def test_the_cli_takes_from_the_api_only_its_public_names_and_cli_support():
    from lnl_cli import api

    offered = set(api.__all__) | set(api.CLI_SUPPORT)
    taken: set[str] = set()
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "lnl_cli.api":
                taken.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "api":
                taken.add(node.attr)
    assert taken <= offered, f"the CLI uses {sorted(taken - offered)} of lnl_cli.api, in neither __all__ nor CLI_SUPPORT"
    assert set(api.CLI_SUPPORT) <= taken, f"CLI_SUPPORT names the CLI does not use: {sorted(set(api.CLI_SUPPORT) - taken)}"
    assert not set(api.__all__) & set(api.CLI_SUPPORT)


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


def test_the_keys_that_do_not_change_a_result_are_config_keys():
    from lnl_cli.result_keys import RESULT_NEUTRAL_KEYS, RESUME_SAFE_KEYS

    assert RESULT_NEUTRAL_KEYS <= RESUME_SAFE_KEYS <= set(config.SPECS)


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
    lnl = package_copy_with(tmp_path, "data/toy.py", TOY_DATASET, "data/__init__.py", [
        ("from lnl_cli.data import celeba, colored_mnist, folder, manifest",
         "from lnl_cli.data import celeba, colored_mnist, folder, manifest, toy"),
        ('    "celeba": celeba.DATASET,\n', '    "celeba": celeba.DATASET,\n    "toy": toy.DATASET,\n')])

    out = tmp_path / "run"
    trained = lnl("train", "data.type=toy", "data.toy_images=32", "method=baseline", "train.epochs=1",
                  "train.select=last", "train.batch_size=16", "--out", str(out), "--json")
    assert trained.returncode == 0, trained.stderr
    assert "toy_images: 32" in (out / "config.yaml").read_text()
    assert '"dataset": "toy noise"' in trained.stdout
    refused = lnl("train", "data.type=toy", "data.toy_images=1", "--out", str(tmp_path / "bad"))
    assert refused.returncode == 2 and "data.toy_images" in refused.stderr
