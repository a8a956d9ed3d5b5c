"""Checks of the public Python API's arguments, at the boundary (:mod:`lnl_cli.api`).

A notebook can pass anything; a wrong type found deep inside the engine is a TypeError or an
AttributeError far from its cause (``train("smoke")``), a string taken for a list is iterated
character by character (``load_config("smoke", "train.lr=1")``, ``compare("RUN")``). Each check here
raises a one-line :class:`~lnl_cli.errors.ConfigError` (exit 2 at the CLI) that names the argument,
what it takes and what it got. Light: no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lnl_cli.errors import ConfigError, shown


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {shown(value)}"


def path(value: Any, name: str) -> Path:
    """A str or os.PathLike, as a Path."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        return Path(value)
    raise ConfigError(f"{name} must be a path (a str or pathlib.Path), {_got(value)}")


def optional_path(value: Any, name: str) -> Path | None:
    return None if value is None else path(value, name)


def preset(value: Any, name: str = "preset") -> str | Path | None:
    """A preset: a built-in name or a YAML path (None: the code defaults)."""
    if value is None or isinstance(value, str):
        return value
    return path(value, name)


def strings(value: Any, name: str, example: str) -> list[str]:
    """A list (any iterable) of strings; a lone string is refused, not iterated a character at a time."""
    if isinstance(value, (str, bytes)):
        raise ConfigError(f"{name} must be a list of strings like [{example!r}], not one string: wrap it in a "
                          f"list, [{shown(value)}]")
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"{name} must be a list of strings like {example!r}, {_got(value)}") from None
    wrong = [item for item in items if not isinstance(item, str)]
    if wrong:
        raise ConfigError(f"{name} must be strings like {example!r}, one per item; {_got(wrong[0])}")
    return items


def overrides(value: Any, name: str = "overrides") -> list[str] | dict[str, Any]:
    """``key=value`` strings, or a (nested or dotted) dict of config keys."""
    if isinstance(value, dict):
        wrong = [key for key in value if not isinstance(key, str)]
        if wrong:
            raise ConfigError(f"{name}: the keys of a dict of overrides are config keys (strings), {_got(wrong[0])}")
        return value
    return strings(value, name, "train.lr=0.01")


def paths(value: Any, name: str) -> list[Path]:
    """Several paths; a lone path is refused (``compare("RUN")`` would read R, U and N)."""
    if isinstance(value, (str, bytes, os.PathLike)):
        raise ConfigError(f"{name} must be a list of paths, not one path: wrap it in a list, [{shown(value)}]")
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"{name} must be a list of paths, {_got(value)}") from None
    return [path(item, f"each of {name}") for item in items]


def instance(value: Any, kind: type | tuple[type, ...], name: str, hint: str = "", optional: bool = True) -> Any:
    """`value` when it is a `kind` (or None, when `optional`)."""
    if (value is None and optional) or isinstance(value, kind):
        return value
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    raise ConfigError(f"{name} must be a {names}{' or None' if optional else ''}{hint}, {_got(value)}")


def flag(value: Any, name: str, optional: bool = False) -> bool | None:
    """True or False (None too, when `optional`); 1, "yes" or a NumPy bool are not guessed at."""
    return instance(value, bool, name, optional=optional)


def number(value: Any, name: str) -> float | None:
    """A real number or None; a bool is not a number here."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise ConfigError(f"{name} must be a number or None, {_got(value)}")


def whole(value: Any, name: str) -> int:
    """An int (not a bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{name} must be a whole number, {_got(value)}")


def callable_or_none(value: Any, name: str) -> Any:
    if value is None or callable(value):
        return value
    raise ConfigError(f"{name} must be a function or None, {_got(value)}")

