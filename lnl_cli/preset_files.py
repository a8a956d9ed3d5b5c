"""Where presets live and how their files are read: the built-in folder, names, header descriptions.

Kept free of torch and of the config schema, so that listing presets is instant.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from lnl_cli.errors import ConfigError, shown
from lnl_cli.fileio import expand_path
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
    """The first paragraph of a preset's header comment, joined into one line: what the preset is for,
    whole (a sentence that wraps onto a second comment line is not cut)."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or (not text and words):
            break
        if text:
            words.append(text)
    return " ".join(words)


def preset_header(path: Path) -> str:
    """The comment block a preset starts with: what it is for and how to run it."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def names_a_file(text: str) -> bool:
    """A preset argument is a path when it has a folder part or a YAML suffix; anything else is a
    built-in name, whatever the working directory holds."""
    separators = {"/", os.sep, os.altsep} - {None}
    return any(sep in text for sep in separators) or text.endswith(PRESET_SUFFIXES)


def _builtin_names(name: str) -> str:
    presets = builtin_presets()
    return f"{did_you_mean(name, presets)}; built-in presets: {', '.join(presets) or 'none'}"


def resolve_preset(name_or_path: str) -> Path:
    """A path to a YAML file (see :func:`names_a_file`) or a built-in preset name."""
    if not names_a_file(name_or_path):
        if name_or_path in builtin_presets():
            return builtin_presets()[name_or_path]
        hint = f" (to read the file {name_or_path}, write ./{name_or_path})" if Path(name_or_path).is_file() else ""
        raise ConfigError(f"unknown preset {shown(name_or_path)}{_builtin_names(name_or_path)}{hint}")
    candidate = expand_path(name_or_path)
    if not candidate.is_file():
        raise ConfigError(f"preset file not found: {candidate}")
    return candidate


def resolve_extends(parent: str, child: Path) -> Path:
    """The preset that `child` extends, looked up beside `child` only: a path (see :func:`names_a_file`)
    relative to `child`'s folder; a bare name as ``<folder>/<name>.yaml`` (or ``.yml``), else a built-in."""
    if names_a_file(parent):
        candidate = child.parent / expand_path(parent)
        if not candidate.is_file():
            raise ConfigError(f"preset {child} extends {shown(parent)}: preset file not found: {candidate}")
        return candidate
    for suffix in PRESET_SUFFIXES:
        candidate = child.parent / f"{parent}{suffix}"
        if candidate.is_file():
            return candidate
    if parent in builtin_presets():
        return builtin_presets()[parent]
    raise ConfigError(f"preset {child} extends unknown preset {shown(parent)}: neither "
                      f"{child.parent / (parent + PRESET_SUFFIXES[0])} nor a built-in preset{_builtin_names(parent)}")


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
