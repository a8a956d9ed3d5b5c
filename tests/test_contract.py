"""The CLI's contract under random input (README, exit codes): whatever a preset, an override, a manifest
or a checkpoint holds, `lnl` exits with a documented code (never 70, the code of a bug), says what is
wrong in at most one `Error:` line, prints no traceback, and a failed `train` leaves no run folder behind.

Every example fails early (bad config, a data root that does not exist, images that do not exist), so the
CLI runs in this process through typer's CliRunner and each example takes milliseconds.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli.checkpoint import make_checkpoint
from lnl_cli.cli import app
from lnl_cli.config import SPECS, to_dict
from lnl_cli.errors import ALL_EXIT_CODES, EXIT_INTERNAL

# Every exit code but the internal error (a bug), which no input may reach.
DOCUMENTED_EXIT_CODES = {code.value for code in ALL_EXIT_CODES} - {EXIT_INTERNAL}
EXAMPLES = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _private_state(monkeypatch, tmp_path):
    """An empty cache (no cached dataset can stand in for a missing data root) and torch's global state
    (threads, RNG) as it was, whatever an example's config asked for."""
    monkeypatch.setenv("LNL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LNL_DEBUG", raising=False)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


def lnl(*args: str):
    """`lnl ARGS` in this process; the CLI's own error mapping decides the exit code."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_contract(result, out: Path | None = None) -> None:
    output = result.output
    event(f"exit {result.exit_code}")  # pytest --hypothesis-show-statistics shows how far examples got
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"escaped the CLI: {result.exception!r}\n{output[-2000:]}")
    assert result.exit_code in DOCUMENTED_EXIT_CODES, (result.exit_code, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    assert sum(line.startswith("Error:") for line in output.splitlines()) <= 1, output[-2000:]
    if out is not None and result.exit_code != 0:
        assert not out.exists() or not any(out.iterdir()), f"a failed train left {sorted(out.iterdir())}"


class Scratch:
    """A fresh folder per example (hypothesis reuses the test's tmp_path across examples)."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="lnl-contract-"))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------- random values
KEYS = st.one_of(st.sampled_from(sorted(SPECS)), st.sampled_from(["extends", "data", "train", "lnl"]),
                 st.text(max_size=12))
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT,
                    st.sampled_from(["colored-mnist", "manifest", "lnl", "cpu", "cuda", "resnet18", "~nobody/x",
                                     "a\x00b", "1e999", "-0", "0x1F", "2024-13-45", ".", "/", "..", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
HOSTILE_YAML = st.sampled_from([
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nseed: *b\n",
    "seed: " + "[" * 5000 + "]" * 5000 + "\n",
    "seed: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "data:\n  root: " + "x" * 100_000 + "\n",
    "seed: " + "9" * 5000 + "\n",
    "extends: extends\n", "extends: ../../../../etc/passwd\n", "extends: [a]\n", "extends: colored-mnist\nseed: -1\n",
    "!!python/object/apply:os.system ['true']\n", "seed: !!binary aGVsbG8=\n", "? [a, b]\n: c\n", "\ufeffseed: 1\n",
    "%YAML 1.1\n---\nseed: 1\n---\nseed: 2\n", "data: {type: manifest, train: a.csv, test: b.csv}\n",
])
PRESET_TEXT = st.one_of(
    TEXT, HOSTILE_YAML,
    st.dictionaries(KEYS, VALUES, max_size=6).map(lambda tree: yaml.safe_dump(tree, allow_unicode=True)),
    st.dictionaries(KEYS, VALUES, max_size=4).map(
        lambda tree: "extends: colored-mnist\n" + yaml.safe_dump(tree, allow_unicode=True) if tree else "extends: x"),
)
OVERRIDE_VALUE = st.one_of(
    TEXT, st.sampled_from(["[" * 3000, "[" * 3000 + "]" * 3000, "[&a [x, x], *a]", "*a", "{a: 1}", "!!set {a}",
                           "99999999999999999999", str(2**64), "-1", "1" + "0" * 400, "nan", "[[1, 2, 3]]", "null"]),
    VALUES.map(lambda value: yaml.safe_dump(value, default_flow_style=True).strip()))
PLAUSIBLE = st.sampled_from(["method=baseline", "method=gray", "train.epochs=1", "seed=7", "data.seed=3",
                             "train.batch_size=2", "data.train_size=10", "data.type=manifest", "data.type=celeba",
                             "model.backbone=resnet18", "lnl.step=single_pass", "data.color_var=0.03"])
OVERRIDES = st.just([]) | st.lists(PLAUSIBLE, max_size=3) | st.lists(
    (st.tuples(KEYS, OVERRIDE_VALUE).map(lambda pair: f"{pair[0]}={pair[1]}") | TEXT | PLAUSIBLE)
    .filter(lambda word: not word.startswith("-")), max_size=4)  # words, never a flag


# ---------------------------------------------------------------------------- presets and overrides
@EXAMPLES
@given(preset=st.none() | PRESET_TEXT, overrides=OVERRIDES)
@example(preset="seed: " + "[" * 5000 + "]" * 5000 + "\n", overrides=[])  # issue 14's cases, always run
@example(preset="a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nseed: *b\n",
         overrides=[])
@example(preset=None, overrides=["train.num_threads=99999999999999999999", "seed=99999999999999999999"])
@example(preset=None, overrides=["seed=" + "[" * 5000])
@example(preset="data:\n  root: \"~nobody-here/x\"\n", overrides=[])
@pytest.mark.slow
def test_random_presets_and_overrides_keep_the_exit_code_contract(preset, overrides):
    with Scratch() as folder:
        out = folder / "run"
        args = ["train", *overrides, "--out", out, "--data-root", folder / "no-data"]
        if preset is not None:
            (folder / "random.yaml").write_text(preset, encoding="utf-8")
            args += ["--preset", folder / "random.yaml"]
        result = lnl(*args)
        assert_contract(result, out)
        assert result.exit_code in (2, 3), result.output  # nothing can train without data


# ---------------------------------------------------------------------------- manifests
CELL = st.one_of(TEXT, st.sampled_from(["", " ", "2", "02", "cat", "dog", "img.png", "train.csv", "/", "~nobody/x",
                                        "a\x00b", "x" * 200_000, '"', "\r\n"]))
ROWS = st.lists(st.lists(CELL, min_size=0, max_size=4), max_size=12)


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


CSV_TEXT = st.one_of(
    st.builds(_csv, st.sampled_from([["path", "label", "bias"], ["label", "path", "bias", "extra"], ["path", "label"]]),
              ROWS),
    TEXT, st.just(""), st.just("path,label,bias\n\x00,1,2\n"))


@EXAMPLES
@given(train_csv=CSV_TEXT, test_csv=CSV_TEXT, extra=OVERRIDES)
@example(train_csv="path,label,bias\n~nobody-here/a.png,2,x\n~nobody-here/b.png,02,y\n",
         test_csv="path,label,bias\n~nobody-here/a.png,2,x\n", extra=[])
def test_random_manifests_keep_the_exit_code_contract(train_csv, test_csv, extra):
    with Scratch() as folder:
        (folder / "train.csv").write_text(train_csv, encoding="utf-8", newline="")
        (folder / "test.csv").write_text(test_csv, encoding="utf-8", newline="")
        (folder / "m.yaml").write_text("data:\n  type: manifest\n  root: .\n  train: train.csv\n  test: test.csv\n"
                                       "  image_size: 8\n  num_workers: 0\nmodel:\n  backbone: paper_convnet\n")
        out = folder / "run"
        result = lnl("train", "--preset", folder / "m.yaml", "method=baseline", *extra, "--out", out)
        assert_contract(result, out)
        assert result.exit_code in (2, 3), result.output  # no CSV here lists an image that exists


# ---------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint_template():
    config = load_config("colored-mnist", ["method=lnl"])
    return make_checkpoint(build_algorithm(config, TaskSpec(10, 10, 8), load_pretrained=False), config, epoch=3)


TENSORS = st.sampled_from([torch.zeros(0), torch.ones(3), torch.tensor(10), torch.tensor([1.5, float("nan")])])
FIELD = st.one_of(VALUES, TENSORS, st.integers(min_value=-10**30, max_value=10**30))
TASK_KEYS = ("num_classes", "num_bias_classes", "bias_bins", "in_channels", "input_mean", "input_std",
             "class_names", "bias_names")
CONFIG_KEYS = st.sampled_from(sorted(SPECS))


def _set_dotted(tree: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


@EXAMPLES
@given(task=st.just({}) | st.dictionaries(st.sampled_from(TASK_KEYS) | st.text(max_size=6), FIELD, max_size=3),
       drop=st.just([]) | st.lists(st.sampled_from(TASK_KEYS), max_size=2),
       top=st.just({}) | st.dictionaries(st.sampled_from(["format_version", "epoch", "config", "task", "model"]),
                                         FIELD, max_size=2),
       config=st.just({}) | st.dictionaries(CONFIG_KEYS, VALUES, max_size=2),
       command=st.sampled_from(["evaluate", "probe-bias"]))
@example(task={"num_classes": -5}, drop=[], top={}, config={}, command="evaluate")
@example(task={"num_classes": "ten"}, drop=[], top={}, config={}, command="evaluate")
@example(task={"num_classes": 10**9}, drop=[], top={}, config={}, command="probe-bias")
@example(task={}, drop=[], top={"format_version": torch.ones(2)}, config={}, command="evaluate")
@pytest.mark.slow
def test_random_checkpoint_fields_keep_the_exit_code_contract(checkpoint_template, task, drop, top, config, command):
    checkpoint = dict(checkpoint_template)
    checkpoint["task"] = {k: v for k, v in {**checkpoint["task"], **task}.items() if k not in drop}
    tree = to_dict(load_config("colored-mnist"))
    for key, value in config.items():
        _set_dotted(tree, key, value)
    checkpoint["config"] = tree
    checkpoint.update(top)
    with Scratch() as folder:
        path = folder / "last.pt"
        torch.save(checkpoint, path)
        args = [command, "--checkpoint", path, "--data-root", folder / "no-data"]
        result = lnl(*(args + ["--steps", "1", "--seeds", "1"] if command == "probe-bias" else args))
        assert_contract(result)
        assert result.exit_code in (2, 3, 4), result.output  # valid ones stop at the missing data


# ---------------------------------------------------------------------------- the Python API's arguments (issue 28)
def _api():
    from lnl_cli import api

    return api


API_MISUSES = {
    "train(a preset name)": lambda api, cfg: api.train("smoke"),
    "train(callbacks=str)": lambda api, cfg: api.train(cfg, callbacks="x"),
    "train(stop=str)": lambda api, cfg: api.train(cfg, stop="soon"),
    "train(out_dir=int)": lambda api, cfg: api.train(cfg, out_dir=5),
    "load_model(None)": lambda api, cfg: api.load_model(None),
    "probe(settings=str)": lambda api, cfg: api.probe("RUN", settings="bad"),
    "probe(max_leakage=str)": lambda api, cfg: api.probe("RUN", max_leakage="0.1"),
    "load_config(overrides=[1])": lambda api, cfg: api.load_config("smoke", [1]),
    "load_config(overrides=str)": lambda api, cfg: api.load_config("smoke", "train.lr=1"),
    "load_config(base=str)": lambda api, cfg: api.load_config("smoke", base="colored-mnist"),
    "compare(str)": lambda api, cfg: api.compare("RUN"),
    "resume(None)": lambda api, cfg: api.resume(None),
    "resume(overrides=str)": lambda api, cfg: api.resume("RUN", "train.epochs=4"),
    "evaluate(int)": lambda api, cfg: api.evaluate(3),
    "predict(sources=str)": lambda api, cfg: api.predict("RUN", "img.png"),
    "export(fmt=int)": lambda api, cfg: api.export("RUN", 3, "m.pt"),
    "sweep_plan(grid=str)": lambda api, cfg: api.sweep_plan("smoke", "seed=0,1"),
    "sweep_plan(jobs=str)": lambda api, cfg: api.sweep_plan("smoke", ["seed=0,1"], jobs="2"),
    "sweep(str)": lambda api, cfg: api.sweep("plan"),
}


@pytest.mark.parametrize("misuse", sorted(API_MISUSES))
def test_wrong_argument_types_at_the_api_are_config_errors_naming_the_argument(misuse, tmp_path, monkeypatch):
    from lnl_cli.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    api = _api()
    with pytest.raises(ConfigError) as raised:
        API_MISUSES[misuse](api, api.load_config("smoke"))
    message = str(raised.value)
    assert "must be" in message and len(message.splitlines()) == 1, message
    assert len(raised.value.problems) == 1  # one problem, not one per character of a string


WEIRD = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.binary(max_size=4),
                  st.text(max_size=8), st.sampled_from([".", "/", "", "smoke", "RUN", "seed=0,1", "train.lr=1", "x.png"]),
                  st.lists(st.one_of(st.integers(), st.text(max_size=6), st.none()), max_size=3),
                  st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), st.integers(), max_size=2),
                  st.just(object()), st.just(Path("RUN")))
API_CALLS = st.sampled_from(["train", "resume", "load_config", "evaluate", "probe", "compare", "load_model", "export",
                             "predict", "sweep_plan", "sweep", "sweep_document", "show_preset", "plan_run",
                             "check_output_file", "write_csv", "check_run_folder", "claim_run_folder"])


@EXAMPLES
@given(name=API_CALLS, args=st.lists(WEIRD, max_size=4))
def test_random_arguments_to_the_api_raise_only_the_project_s_errors(name, args):
    """Whatever a notebook passes, the API returns or raises an LnlError (never a TypeError from inside)."""
    from lnl_cli.errors import LnlError

    with Scratch() as folder:
        old = Path.cwd()
        try:
            import os

            os.chdir(folder)  # relative paths land in the scratch folder, and nothing there is a run or data
            getattr(_api(), name)(*args)
        except LnlError as exc:
            event(f"{name}: {type(exc).__name__}")
            assert len(str(exc).splitlines()) <= 1
        except TypeError as exc:  # too many or too few positional arguments: Python's own call check
            assert "positional argument" in str(exc), exc
        finally:
            os.chdir(old)


# ---------------------------------------------------------------------------- predict, export and sweep (issue 28)
PATHISH = st.one_of(st.sampled_from([".", "/", "", "none.pt", "none.png", "list.csv", "out.csv", "~nobody/x", "a\x00b",
                                     "/dev/full", "/proc/x/y"]), TEXT)
FLAGS = {
    "predict": st.lists(st.one_of(st.tuples(st.sampled_from(["-c", "--checkpoint", "--out", "--path-column"]), PATHISH),
                                  st.tuples(st.sampled_from(["--json", "--force"])), st.tuples(PATHISH)), max_size=5),
    "export": st.lists(st.one_of(st.tuples(st.sampled_from(["-c", "--out", "--format"]),
                                           st.one_of(PATHISH, st.sampled_from(["onnx", "torchscript", "keras"]))),
                                 st.tuples(st.sampled_from(["--json", "--force"]))), max_size=5),
    "sweep": st.lists(st.one_of(st.tuples(st.just("--grid"), st.one_of(TEXT, st.sampled_from(
                                    ["seed=0,1", "seed=", "train.lr=[1,2", "method=lnl,baseline", "x=1", "=1"]))),
                                st.tuples(st.just("--set"), OVERRIDE_VALUE.map(lambda v: f"seed={v}")),
                                st.tuples(st.just("--set"), PLAUSIBLE), st.tuples(st.just("--preset"), PATHISH),
                                st.tuples(st.just("--jobs"), st.sampled_from(["0", "-1", "x", "1"])),
                                st.tuples(st.sampled_from(["--dry-run", "--json"]))), max_size=5),
}


@EXAMPLES
@given(command=st.sampled_from(sorted(FLAGS)), data=st.data())
@example(command="export", data=None)  # the case: export over a run's best.pt is refused
def test_random_predict_export_and_sweep_arguments_keep_the_exit_code_contract(command, data):
    with Scratch() as folder:
        if data is None:
            (folder / "best.pt").write_bytes(b"PK")
            (folder / ".lnl-claim").write_text("{}")
            words = ["-c", str(folder), "--out", str(folder / "best.pt")]
        else:
            words = [word for group in data.draw(FLAGS[command]) for word in group]
        words = [word for word in words if not word.startswith("--data-root")]
        extra = ["--data-root", str(folder / "no-data"), "--out", str(folder / "s")] if command == "sweep" else []
        old = Path.cwd()
        try:
            import os

            os.chdir(folder)
            result = lnl(command, *words, *extra)
        finally:
            os.chdir(old)
        assert_contract(result)
        if data is None:
            assert result.exit_code == 2 and (folder / "best.pt").read_bytes() == b"PK", result.output
