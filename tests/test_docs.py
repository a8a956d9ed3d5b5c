"""docs/ says what the code does: its generated parts are current, and every key, exit code, command,
option, method and JSON field the code has is documented. A new one fails here until the docs name it
(for config.md and cli.md: until `python docs/generate.py` is run)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from lnl_cli import api, errors
from lnl_cli.algorithms import ALGORITHMS
from lnl_cli.cli import app
from lnl_cli.data import DATASETS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc(name: str) -> str:
    return (DOCS / name).read_text()


def _section(text: str, heading: str) -> str:
    """The text under the Markdown heading `heading` (any level), up to the next heading of its level or
    above; lines of code blocks are never headings."""
    text = re.sub(r"```.*?```", lambda m: m[0].replace("\n#", "\n\u2063#"), text, flags=re.S)
    match = re.search(rf"^(#+) {re.escape(heading)}[ \t]*$", text, re.M)
    assert match, f"no section {heading!r}"
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{len(match[1])}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


# ---------------------------------------------------------------------------- generated parts


@pytest.mark.parametrize("filename", ["config.md", "cli.md"])
def test_the_generated_parts_of_the_docs_are_current(filename):
    generate = _generator()
    text = _doc(filename)
    assert set(generate.BLOCKS[filename]) <= set(generate.blocks(text)), "generated markers missing"
    assert generate.render(filename, text) == text, f"docs/{filename} is stale: run python docs/generate.py"


def test_every_config_key_with_its_default_is_in_config_md():
    text = _doc("config.md")
    for row in api.config_keys():
        assert re.search(rf"^\| `{re.escape(row['key'])}` \|", text, re.M), row["key"]


def test_every_built_in_preset_is_in_config_md():
    table = _section(_doc("config.md"), "Built-in presets")
    missing = [name for name in api.presets() if f"`{name}`" not in table]
    assert not missing, f"config.md's preset table lacks {missing}"


def test_every_exit_code_is_in_the_table_of_cli_md():
    table = _section(_doc("cli.md"), "Exit codes")
    for name, value in vars(errors).items():
        if name.startswith("EXIT_"):
            assert re.search(rf"^\| {value} \| `{name}` \| \S", table, re.M), f"exit code {value} ({name})"


def _commands():
    found, root = [], typer.main.get_command(app)

    def walk(command, name, parent):
        context = command.make_context(name.rsplit(" ", 1)[-1], [], parent=parent, resilient_parsing=True)
        found.append((name, command))
        if hasattr(command, "list_commands"):
            for sub in command.list_commands(context):
                walk(command.get_command(context, sub), f"{name} {sub}", context)

    walk(root, "lnl", None)
    return found


def test_every_command_and_option_is_in_cli_md():
    text = _doc("cli.md")
    commands = _commands()
    assert {"lnl train", "lnl sweep", "lnl config keys", "lnl presets show"} <= {name for name, _ in commands}
    for name, command in commands:
        section = _section(text, f"`{name}`")
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                for opt in [*param.opts, *param.secondary_opts]:
                    assert re.search(rf"^\| `([^`|]*[ ,])?{re.escape(opt)}[`, ]", section, re.M), f"{name} {opt}"


# ---------------------------------------------------------------------------- methods and data


def test_every_registered_method_has_a_section_naming_its_keys():
    text = _doc("methods.md")
    for name in ALGORITHMS:
        section = _section(text, f"`{name}`")
        own = [row["key"] for row in api.config_keys() if row["key"].split(".")[0] == name]
        missing = [key for key in own if f"`{key}`" not in section]
        assert not missing, f"methods.md's `{name}` section lacks {missing}"


def test_every_dataset_type_and_builder_flag_is_in_data_md():
    text = _doc("data.md")
    for name in DATASETS:
        _section(text, f"`{name}`")
    from lnl_cli.tools import background_mnist, utkface

    for tool in (utkface, background_mnist):
        source = Path(tool.__file__).read_text()
        for flag in set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source)):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{tool.__name__} {flag}"


# ---------------------------------------------------------------------------- the index and links


def test_the_index_lists_every_doc_and_every_relative_link_resolves():
    index = _doc("README.md")
    for path in DOCS.glob("*.md"):
        if path.name != "README.md":
            assert f"]({path.name})" in index, f"docs/README.md does not list {path.name}"
    for path in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            assert resolved.exists(), f"{path.name}: broken link {target}"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved.read_text()), f"{path.name}: no anchor {target}"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, re.M)}


# ---------------------------------------------------------------------------- JSON outputs and the run folder

SMALL = ["data.train_size=200", "data.test_size=200", "data.val_size=100", "train.epochs=2",
         "train.pretrain_epochs=1", "train.batch_size=50", "train.num_threads=1", "train.select=val_accuracy"]


def _json(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def outputs(mnist_root, tmp_path_factory):
    """A real instance of every JSON output, from one tiny run (a few seconds)."""
    base = tmp_path_factory.mktemp("docs")
    run = base / "run"
    image = base / "digit.png"
    Image.new("RGB", (28, 28), (200, 30, 30)).save(image)
    found = {
        "summary.json, `lnl train --json`":
            _json("train", "--preset", "colored-mnist", "--data-root", str(mnist_root), "--out", str(run), "--json",
                  *SMALL),
        "`lnl train --dry-run --json`":
            _json("train", "--preset", "colored-mnist", "--out", str(base / "dry"), "--dry-run", "--json", *SMALL),
        "`lnl evaluate --json`": _json("evaluate", "--checkpoint", str(run), "--json"),
        "probe.json, `lnl probe-bias --json`":
            _json("probe-bias", "--checkpoint", str(run), "--seeds", "1", "--steps", "20", "--max-leakage", "1",
                  "--json"),
        "`lnl export --json`":
            _json("export", "--checkpoint", str(run), "--out", str(base / "model.pt"), "--json"),
        "`lnl presets show --json`": _json("presets", "show", "smoke", "--json"),
        "`lnl env --json`": _json("env", "--json"),
        "sweep.json, `lnl sweep --json`":
            _json("sweep", "--preset", "colored-mnist", "--data-root", str(mnist_root), "--grid", "seed=3",
                  "--out", str(base / "sweep"), "--json", *SMALL),
        "`lnl presets --json`": _json("presets", "--json"),
        "`lnl config keys --json`": _json("config", "keys", "--json"),
        "`lnl compare --json`": _json("compare", str(run), "--json"),
        "`lnl predict --json`": _json("predict", "--checkpoint", str(run), str(image), "--json"),
    }
    assert json.loads((run / "probe.json").read_text()).keys() == found["probe.json, `lnl probe-bias --json`"].keys()
    assert json.loads((run / "summary.json").read_text()) == found["summary.json, `lnl train --json`"]
    assert json.loads((base / "sweep" / "sweep.json").read_text()) == found["sweep.json, `lnl sweep --json`"]
    return run, found


@pytest.mark.mnist
@pytest.mark.slow
def test_every_json_output_s_fields_are_in_json_md(outputs):
    text = _doc("json.md")
    rows = _section(text, "Lists of rows")
    _, found = outputs
    for heading, document in found.items():
        if isinstance(document, list):
            (line,) = [line for line in rows.splitlines() if line.startswith(f"| {heading} |")]
            fields = {key for key in document[0] if not key.startswith("p_")}
            missing = sorted(key for key in fields if f"`{key}`" not in line)
        else:
            assert document["schema_version"] == 1, heading
            section = _section(text, heading)
            missing = sorted(key for key in document if f"`{key}`" not in section)
            for key, value in document.items():  # one level down: the objects a field holds
                if isinstance(value, dict) and key not in ("config", "grid", "counts", "set"):
                    missing += [f"{key}.{sub}" for sub in value if f"`{sub}`" not in section]
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    missing += [f"{key}[].{sub}" for sub in value[0] if f"`{sub}`" not in section]
        assert not missing, f"json.md's section {heading!r} lacks {missing}"
    records = [json.loads(line) for line in (outputs[0] / "metrics.jsonl").read_text().splitlines()]
    metrics = _section(text, "metrics.jsonl")
    missing = sorted({key for record in records for key in record if f"`{key}`" not in metrics})
    assert not missing, f"json.md's metrics.jsonl section lacks {missing}"


@pytest.mark.mnist
@pytest.mark.slow
def test_every_file_of_a_run_folder_and_checkpoint_field_is_in_run_folder_md(outputs):
    run, _ = outputs
    text = _doc("run-folder.md")
    missing = sorted(path.name for path in run.iterdir() if f"`{path.name}" not in text)
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    missing += [f"last.pt: {key}" for key in checkpoint if f"`{key}`" not in text]
    missing += [f"last.pt: task.{key}" for key in checkpoint["task"] if f"`{key}`" not in text]
    assert not missing, f"run-folder.md lacks {missing}"
