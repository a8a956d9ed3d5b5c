"""Typed run configuration: code defaults < preset YAML < ``key=value`` overrides.

Every key is a dotted path into nested dataclasses. Validation collects *all*
problems (unknown keys with a did-you-mean, wrong types, out-of-range values) and
raises one :class:`~lnl_cli.errors.ConfigError`, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from lnl_cli.errors import ConfigError

PRESET_SUFFIXES = (".yaml", ".yml")


def _meta(help: str, **checks: Any) -> dict[str, Any]:
    """Field metadata: a one-line help text and optional numeric bounds."""
    return {"help": help, **checks}


@dataclass
class ColumnsConfig:
    path: str = field(default="path", metadata=_meta("manifest column with the image path (relative to data.root)"))
    label: str = field(default="label", metadata=_meta("manifest column with the class label"))
    bias: str = field(default="bias", metadata=_meta("manifest column with the bias attribute"))


@dataclass
class DataConfig:
    type: Literal["colored_mnist", "manifest", "celeba"] = field(
        default="colored_mnist",
        metadata=_meta("dataset: colored_mnist (generated from MNIST), manifest (your images listed in CSV files), "
                       "celeba (torchvision's CelebA folder)"))
    root: Union[str, None] = field(
        default=None,
        metadata=_meta("colored_mnist: folder holding MNIST/raw; manifest: folder the CSVs and image paths are "
                       "relative to (relative to the preset's folder); celeba: folder holding celeba/; "
                       "default: $LNL_DATA_ROOT, else ~/.cache/lnl/data"))
    download: bool = field(
        default=False, metadata=_meta("let torchvision download MNIST when it is missing"))
    color_var: float = field(
        default=0.02, metadata=_meta("sigma^2 of the colour jitter on the [0,1] scale", min=0.0))
    seed: int = field(default=0, metadata=_meta("seed of the colour generator and of subsets", min=0))
    train_size: Union[int, None] = field(
        default=None, metadata=_meta("use a random subset of this many training images", min=1))
    test_size: Union[int, None] = field(
        default=None, metadata=_meta("use a random subset of this many test images", min=1))
    class_colors: list[list[int]] = field(
        default_factory=list, metadata=_meta("mean RGB colour (0-255) of each class"))
    stroke_threshold: int = field(
        default=128, metadata=_meta("grayscale value above which a pixel is digit stroke", min=0, max=254))
    color_bins: int = field(
        default=8, metadata=_meta("bins per colour channel that the bias head predicts", min=2, max=256))
    train: Union[str, None] = field(
        default=None, metadata=_meta("manifest: training CSV (relative to data.root); celeba: split name "
                                     "(train, valid, test, all)"))
    test: Union[str, None] = field(
        default=None, metadata=_meta("manifest: test CSV (relative to data.root); celeba: split name"))
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    image_size: int = field(
        default=64, metadata=_meta("manifest, celeba: images are resized to this square size", min=8, max=1024))
    classes: list[Union[int, str]] = field(
        default_factory=list,
        metadata=_meta("manifest: label values in class order; default: sorted from the training CSV"))
    bias_classes: list[Union[int, str]] = field(
        default_factory=list,
        metadata=_meta("manifest: bias values in order; default: sorted from the training CSV"))
    target_attr: str = field(default="Blond_Hair", metadata=_meta("celeba: the attribute to classify"))
    bias_attr: str = field(default="Male", metadata=_meta("celeba: the attribute that is the bias"))
    loading: Literal["auto", "memory", "stream"] = field(
        default="auto",
        metadata=_meta("manifest, celeba: memory decodes every image once into uint8 tensors on the training "
                       "device; stream decodes batches in DataLoader workers; auto: memory when it fits "
                       "data.memory_limit_mb"))
    memory_limit_mb: int = field(
        default=4096, metadata=_meta("largest decoded dataset (both splits) that loading=auto keeps in memory",
                                     min=1))
    num_workers: int = field(
        default=4, metadata=_meta("processes decoding images (stream) or threads (memory, once)", min=0))
    mean: list[float] = field(
        default_factory=list,
        metadata=_meta("per-channel input mean on the [0,1] scale; default: the dataset's (ImageNet's for "
                       "manifest and celeba)"))
    std: list[float] = field(
        default_factory=list, metadata=_meta("per-channel input std; default: the dataset's"))


@dataclass
class ModelConfig:
    backbone: Literal["paper_convnet", "resnet18", "resnet34", "resnet50"] = field(
        default="paper_convnet",
        metadata=_meta("network split into f and g: the paper's Colored-MNIST convnet or a torchvision ResNet"))
    feature_layer: Union[str, None] = field(
        default=None,
        metadata=_meta("where f ends and g starts: conv2 for paper_convnet; layer1..layer4 for ResNets "
                       "(default layer3)"))
    pretrained: Union[str, None] = field(
        default=None,
        metadata=_meta("local weights file (a torchvision ResNet state_dict) loaded before training; never "
                       "downloaded"))
    bias_head: Literal["auto", "color_pixels", "conv", "mlp", "spatial"] = field(
        default="auto",
        metadata=_meta("h: color_pixels (per-pixel colour bins, the paper's Colored-MNIST head) or a "
                       "categorical head predicting the bias class: conv or mlp on pooled features, spatial "
                       "at every feature position; auto: color_pixels for colored_mnist on paper_convnet, "
                       "else conv"))
    bias_head_width: int = field(default=128, metadata=_meta("hidden width of the conv/mlp bias head", min=1))


@dataclass
class TrainConfig:
    epochs: int = field(default=100, metadata=_meta("total epochs, warm-up included", min=1))
    pretrain_epochs: int = field(
        default=0, metadata=_meta("leading epochs of plain cross-entropy before the adversarial game", min=0))
    batch_size: int = field(default=128, metadata=_meta("mini-batch size", min=1))
    lr: float = field(default=0.01, metadata=_meta("SGD learning rate", min_exclusive=0.0))
    momentum: float = field(default=0.9, metadata=_meta("SGD momentum", min=0.0, max=1.0))
    weight_decay: float = field(default=5e-4, metadata=_meta("SGD weight decay", min=0.0))
    lr_decay_rate: float = field(
        default=0.1, metadata=_meta("factor applied to the learning rate every lr_decay_epochs", min_exclusive=0.0, max=1.0))
    lr_decay_epochs: int = field(
        default=40, metadata=_meta("epochs between learning-rate decays, counted within each phase", min=1))
    pretrain_lr_decay_epochs: Union[int, None] = field(
        default=None,
        metadata=_meta("lr_decay_epochs of plain cross-entropy training (LNL's warm-up, a whole baseline run); "
                       "null: train.lr_decay_epochs", min=1))
    eval_every: int = field(default=1, metadata=_meta("evaluate on the test set every N epochs (and at the end)", min=1))
    num_threads: Union[int, None] = field(
        default=None, metadata=_meta("CPU threads for torch; default: all cores", min=1))
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto",
        metadata=_meta("autocast dtype of the forward passes; auto: bf16 on CUDA and on CPUs with native "
                       "bf16 (AVX512-BF16/AMX), else fp32"))
    channels_last: bool = field(default=True, metadata=_meta("channels-last memory layout (faster convolutions)"))
    compile: bool = field(default=False, metadata=_meta("torch.compile the networks (slow start, faster steps)"))
    sync_batchnorm: bool = field(
        default=False,
        metadata=_meta("with several processes (torchrun), BatchNorm statistics over the global batch instead of "
                       "each process's share; no effect in one process"))


@dataclass
class DistConfig:
    backend: Literal["auto", "nccl", "gloo"] = field(
        default="auto",
        metadata=_meta("collective backend when launched by torchrun; auto: nccl on CUDA, gloo on the CPU"))


@dataclass
class LnlConfig:
    # `lambda` is a Python keyword, so the attribute is `lambda_`; its config key is `lnl.lambda`.
    lambda_: float = field(
        default=0.01, metadata=_meta("weight of the negative-entropy (mutual-information) term", min=0.0, key="lambda"))
    grl_scale: float = field(
        default=0.1, metadata=_meta("scale of the reversed bias gradient that reaches f", min=0.0))
    step: Literal["alternating", "single_pass"] = field(
        default="alternating",
        metadata=_meta("alternating: the paper's two passes per batch; single_pass: one forward of f, "
                       "the same gradients routed in one update"))


@dataclass
class BlindEyeConfig:
    confusion_weight: float = field(
        default=0.1, metadata=_meta("weight of the confusion loss (h's prediction vs uniform) in f and g's loss",
                                    min=0.0))


@dataclass
class Config:
    method: Literal["baseline", "lnl", "gray", "blind_eye"] = field(
        default="lnl", metadata=_meta("training algorithm"))
    seed: int = field(default=0, metadata=_meta("seed of weights and batch order", min=0))
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=_meta("where to train"))
    name: str = field(default="run", metadata=_meta("preset name, used in run folder names"))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    lnl: LnlConfig = field(default_factory=LnlConfig)
    blind_eye: BlindEyeConfig = field(default_factory=BlindEyeConfig)


# ---------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class KeySpec:
    """One leaf of the config tree: its dotted key, attribute path, type and checks."""

    key: str
    attrs: tuple[str, ...]
    type: Any
    metadata: dict[str, Any]
    default: Any


def _key_name(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _collect_specs(cls: type, prefix: str = "", attrs: tuple[str, ...] = ()) -> list[KeySpec]:
    hints = typing.get_type_hints(cls)
    specs: list[KeySpec] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{_key_name(f)}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            specs.extend(_collect_specs(hint, key + ".", attrs + (f.name,)))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        specs.append(KeySpec(key, attrs + (f.name,), hint, dict(f.metadata), default))
    return specs


SPECS: dict[str, KeySpec] = {s.key: s for s in _collect_specs(Config)}


def describe_keys() -> list[tuple[str, str, Any]]:
    """(key, help, default) of every config key, for docs and `--help`."""
    return [(s.key, s.metadata.get("help", ""), s.default) for s in SPECS.values()]


# ---------------------------------------------------------------------------- value checks


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise ValueError saying what was expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ValueError(f"expected one of {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except ValueError:
                pass
        raise ValueError(f"expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return [_coerce(v, item_type) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(f"expected a finite number, got {value!r}")
            return number
        raise ValueError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str) and value.strip():
            return value
        raise ValueError(f"expected a non-empty string, got {value!r}")
    raise ValueError(f"unsupported type {tp!r}")  # pragma: no cover - schema bug


def _check_bounds(value: Any, meta: dict[str, Any]) -> None:
    if value is None or isinstance(value, (list, str, bool)):
        return
    if "min" in meta and value < meta["min"]:
        raise ValueError(f"must be >= {meta['min']}, got {value!r}")
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        raise ValueError(f"must be > {meta['min_exclusive']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ValueError(f"must be <= {meta['max']}, got {value!r}")


def _did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------- presets


def _presets_folder():
    """The installed `lnl_cli.presets` package, or the checkout's `presets/` when run from source."""
    try:
        return resources.files("lnl_cli.presets")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "presets"


def builtin_presets() -> dict[str, Path]:
    """Name -> path of every preset shipped with the package."""
    folder = _presets_folder()
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(PRESET_SUFFIXES):
            found[entry.name.rsplit(".", 1)[0]] = Path(str(entry))
    return dict(sorted(found.items()))


def preset_description(path: Path) -> str:
    """First line of a preset's header comment: what the preset is for."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if line.startswith("#") and text:
            return text
    return ""


def resolve_preset(name_or_path: str) -> Path:
    """A built-in preset name or a path to a YAML file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in PRESET_SUFFIXES or os.sep in name_or_path or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"preset file not found: {candidate}")
        return candidate
    presets = builtin_presets()
    if name_or_path in presets:
        return presets[name_or_path]
    known = ", ".join(presets) or "none"
    raise ConfigError(
        f"unknown preset '{name_or_path}'{_did_you_mean(name_or_path, presets)}; built-in presets: {known}")


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read preset {path}: {exc}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"preset {path} is not valid YAML{line}") from None
    if loaded is None:
        raise ConfigError(f"preset {path} is empty")
    if not isinstance(loaded, dict):
        raise ConfigError(f"preset {path} must be a mapping of keys to values, got {type(loaded).__name__}")
    return loaded


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[str(dotted)] = value
    return flat


EXTENDS_KEY = "extends"
# Paths in a preset file are relative to the file's folder.
PATH_KEYS = ("data.root", "model.pretrained")
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
        path = resolve_preset(current) if not chain else _resolve_relative(current, chain[0][0])
        if path.resolve() in seen or len(chain) >= MAX_EXTENDS_DEPTH:
            raise ConfigError(f"preset {path} extends itself in a loop")
        seen.add(path.resolve())
        tree = _read_yaml_mapping(path)
        parent = tree.pop(EXTENDS_KEY, None)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(f"preset {path}: '{EXTENDS_KEY}' must name a preset")
        flat = _rename_legacy_keys(_flatten(tree))
        for key in PATH_KEYS:
            value = flat.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                flat[key] = str((path.parent / value).resolve())
        chain.insert(0, (path, flat))
        current = parent
    chain[-1][1].setdefault("name", chain[-1][0].stem)
    return chain


def _resolve_relative(name_or_path: str, child: Path) -> Path:
    """A parent named by path is relative to the preset that extends it."""
    candidate = child.parent / name_or_path
    return candidate if candidate.suffix in PRESET_SUFFIXES and candidate.is_file() else resolve_preset(name_or_path)


# ---------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as a YAML scalar (``1e-3``, ``true``, ``null``, ``[1, 2]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override '{text}' is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
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


RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
FEATURE_LAYERS = {"paper_convnet": ("conv2",), "resnet18": RESNET_STAGES, "resnet34": RESNET_STAGES,
                  "resnet50": RESNET_STAGES}
DEFAULT_FEATURE_LAYER = {"paper_convnet": "conv2", "resnet18": "layer3", "resnet34": "layer3", "resnet50": "layer3"}
CELEBA_SPLITS = ("train", "valid", "test", "all")


def feature_layer(config: Config) -> str:
    """model.feature_layer, or the backbone's default."""
    return config.model.feature_layer or DEFAULT_FEATURE_LAYER[config.model.backbone]


def bias_head_kind(config: Config) -> str:
    """model.bias_head with `auto` resolved: the paper's per-pixel colour head where it applies."""
    if config.model.bias_head != "auto":
        return config.model.bias_head
    pixel_head = config.data.type == "colored_mnist" and config.model.backbone == "paper_convnet"
    return "color_pixels" if pixel_head else "conv"


def _data_checks(data: DataConfig) -> list[str]:
    problems = []
    if data.type == "colored_mnist":
        colors = data.class_colors
        if len(colors) != 10:
            problems.append(f"data.class_colors: colored_mnist needs 10 RGB triples, got {len(colors)}")
        elif any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors):
            problems.append("data.class_colors: every colour must be three integers in 0..255")
    if data.type == "manifest":
        problems += [f"data.{key}: a manifest dataset needs a CSV file name" for key in ("train", "test")
                     if not getattr(data, key)]
    if data.type == "celeba":
        problems += [f"data.{key}: celeba splits are {', '.join(CELEBA_SPLITS)}, got {getattr(data, key)!r}"
                     for key in ("train", "test") if getattr(data, key) not in (None, *CELEBA_SPLITS)]
    for key in ("classes", "bias_classes"):
        values = [str(v) for v in getattr(data, key)]
        if len(set(values)) != len(values):
            problems.append(f"data.{key}: values must be unique, got {values}")
    for key in ("mean", "std"):
        values = getattr(data, key)
        if values and len(values) != 3:
            problems.append(f"data.{key}: needs 3 values (R, G, B), got {len(values)}")
    if any(v <= 0 for v in data.std):
        problems.append("data.std: every value must be > 0")
    return problems


def _model_checks(config: Config) -> list[str]:
    model, problems = config.model, []
    layers = FEATURE_LAYERS[model.backbone]
    if model.feature_layer is not None and model.feature_layer not in layers:
        problems.append(f"model.feature_layer: {model.backbone} has {', '.join(layers)}, got "
                        f"{model.feature_layer!r}{_did_you_mean(model.feature_layer, layers)}")
    if model.bias_head == "color_pixels" and (config.data.type != "colored_mnist"
                                              or model.backbone != "paper_convnet"):
        problems.append("model.bias_head: color_pixels needs data.type=colored_mnist and "
                        "model.backbone=paper_convnet (use conv or mlp)")
    if model.pretrained is not None and model.backbone == "paper_convnet":
        problems.append("model.pretrained: weights files are for ResNet backbones")
    return problems


def _cross_checks(config: Config) -> list[str]:
    return _data_checks(config.data) + _model_checks(config)


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
            problems.append(f"unknown key '{key}'{where}{_did_you_mean(key, SPECS)}")
            continue
        try:
            value = _coerce(raw, spec.type)
            _check_bounds(value, spec.metadata)
        except ValueError as exc:
            problems.append(f"{key}{where}: {exc}")
            continue
        _set_attr(config, spec.attrs, value)
    if not problems:
        problems.extend(_cross_checks(config))
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
    for key, value in pairs:
        values[key] = value
        origin[key] = "override"
    try:
        config = build_config(values, origin)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config


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
    return build_config(_flatten(tree))


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
