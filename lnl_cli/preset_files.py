"""Where presets live and how their files are read: the built-in folder, names, header descriptions.

Kept free of torch and of the config schema, so that listing presets is instant.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from lnl_cli.errors import ConfigError
from lnl_cli.safe_yaml import MAX_CHARS, YamlError, load_yaml
from lnl_cli.schema import did_you_mean

PRESET_SUFFIXES = (".yaml", ".yml")


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
        f"unknown preset '{name_or_path}'{did_you_mean(name_or_path, presets)}; built-in presets: {known}")


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A preset file's top-level mapping; every failure is a one-line ConfigError."""
    try:
        with path.open(encoding="utf-8") as handle:
            text = handle.read(MAX_CHARS + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read preset {path}: {exc}") from None
    try:
        loaded = load_yaml(text)
    except YamlError as exc:
        where = f" line {exc.line}" if exc.line is not None else ""
        raise ConfigError(f"preset {path}{where}: {exc.problem}") from None
    if loaded is None:
        raise ConfigError(f"preset {path} is empty")
    if not isinstance(loaded, dict):
        raise ConfigError(f"preset {path} must be a mapping of keys to values, got {type(loaded).__name__}")
    return loaded
