"""Methods are components: a new one is its module plus one registry line, and the config, `lnl config
keys`, progress lines, plots and `lnl compare` learn it from the registry (MethodSpec)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lnl_cli import compare, config, plots, progress
from lnl_cli.algorithms import METHODS, compare_keys, loss_names, method_sections

from helpers import package_copy_with

REPO = Path(config.__file__).resolve().parent.parent


def test_every_method_section_is_in_the_config_with_its_declared_keys():
    for name, spec in METHODS.items():
        for section, options in spec.sections:
            declared = {s.key for s in config.collect_specs(options, section + ".")}
            assert declared and declared <= set(config.SPECS), f"{name}: {section}.* missing from the config"
    assert list(method_sections()) == ["lnl", "lnl_probe", "blind_eye", "csad", "group_dro"]


def test_names_shown_by_progress_plots_and_compare_come_from_the_registry():
    for spec in METHODS.values():
        for loss, short in spec.losses.items():
            assert loss in plots.loss_keys()
            assert progress.short_names()[loss] == short
        assert set(spec.compare_keys) <= set(compare.config_columns()) <= set(config.SPECS) | {"method"}
    assert tuple(loss_names()) == plots.loss_keys()
    assert compare_keys()[:3] == ("lnl.lambda", "lnl.grl_scale", "lnl.step")


def test_a_section_shared_by_two_methods_must_be_one_options_class(monkeypatch):
    from lnl_cli import algorithms
    from lnl_cli.algorithms.base import MethodSpec

    @__import__("dataclasses").dataclass
    class Other:
        lambda_: float = 1.0

    monkeypatch.setitem(algorithms.METHODS, "other", MethodSpec(METHODS["lnl"].algorithm, "x", sections=(("lnl", Other),)))
    with pytest.raises(TypeError, match="method other declares section lnl with another options class"):
        method_sections()


TOY_METHOD = '''
"""A toy method: cross-entropy plus a weighted penalty on g's squared logits (for the registry test)."""
from __future__ import annotations

from dataclasses import dataclass

from lnl_cli.algorithms.base import LABEL_LOSS, Algorithm, MethodSpec
from lnl_cli.schema import option


@dataclass
class ToyOptions:
    weight: float = option(0.5, "toy: weight of the squared-logit penalty", min=0.0)


class ToyPenalty(Algorithm):
    def update(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.predict(batch.images).float()
        label_loss = self.label_loss(logits, batch.labels)
        penalty = logits.pow(2).mean()
        (label_loss + self.config.toy.weight * penalty).backward()
        self._step(self.optimizer)
        return {"label_loss": label_loss.detach(), "toy_penalty": penalty.detach()}


def check(config):
    return ["toy.weight: the toy refuses 7"] if config.toy.weight == 7 else []


METHOD = MethodSpec(ToyPenalty, "a toy penalty", sections=(("toy", ToyOptions),),
                    losses={**LABEL_LOSS, "toy_penalty": "penalty"}, check=check, compare_keys=("toy.weight",))
'''


@pytest.mark.slow
@pytest.mark.mnist
def test_a_new_method_needs_only_its_module_and_a_registry_line(tmp_path, mnist_root):
    """Copy the package, add algorithms/toy.py and one registry entry; train with it through the CLI and
    find it in `lnl config keys`, progress, plots and `lnl compare`: nothing else needs to know it."""
    run = package_copy_with(tmp_path, "algorithms/toy.py", TOY_METHOD, "algorithms/__init__.py", [
        ("from lnl_cli.algorithms import base, csad, group_dro, lnl\n",
         "from lnl_cli.algorithms import base, csad, group_dro, lnl, toy\n"),
        ('    "group_dro": group_dro.METHOD,\n', '    "group_dro": group_dro.METHOD,\n    "toy": toy.METHOD,\n')])

    def lnl(*args: str) -> subprocess.CompletedProcess:
        return run(*args, env={"LNL_DATA_ROOT": str(mnist_root)})

    keys = lnl("config", "keys")
    assert keys.returncode == 0, keys.stderr
    assert "toy.weight" in keys.stdout and "a toy penalty" in keys.stdout
    out = tmp_path / "run"
    trained = lnl("train", "--preset", "colored-mnist", "method=toy", "toy.weight=0.25", "data.train_size=256",
                  "data.val_size=0", "train.select=last", "data.test_size=128", "train.epochs=1", "train.batch_size=64", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert "penalty" in trained.stderr  # progress shows the toy loss by its short name
    assert yaml.safe_load((out / "config.yaml").read_text())["toy"] == {"weight": 0.25}
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["toy_penalty"] > 0
    probe = subprocess.run([sys.executable, "-c", "from lnl_cli import plots; print(plots.loss_keys())"],
                           cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path / "src")})
    assert "toy_penalty" in probe.stdout  # losses.png draws its curve
    assert (out / "losses.png").stat().st_size > 0
    compared = lnl("compare", str(out), "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)[0]["toy.weight"] == 0.25
    refused = lnl("train", "--preset", "colored-mnist", "method=toy", "toy.weight=7", "--out", str(tmp_path / "bad"))
    assert refused.returncode == 2 and "toy.weight: the toy refuses 7" in refused.stderr


def test_the_engine_leaves_learning_rates_to_the_algorithm():
    """Each phase's rate and the warm-up ramp are the algorithm's (begin_epoch, begin_step): one owner."""
    from lnl_cli import engine
    assert "param_groups" not in Path(engine.__file__).read_text()


def test_the_cli_starts_without_loading_torch():
    """`lnl --version`, `--help` and `presets` answer at once: the registries (and torch) load only when a
    command needs them."""
    script = "import sys; import lnl_cli.cli; print('torch' in sys.modules)"
    started = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "False"
