"""The generic config machinery: option fields, the key table, value coercion and bounds.

Components (datasets, backbones, algorithms) declare their options with :func:`option` in their own
modules; :mod:`lnl_cli.config` assembles them into one typed tree. Nothing here knows any component.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from lnl_cli.errors import shown

# The largest seed: torch.manual_seed takes any 64-bit value, and datasets derive seeds as 2 * seed + 1.
MAX_SEED = 2**63 - 1


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
           **checks: Any) -> Any:
    """A config field: its default (or `factory` for lists), a one-line help text and optional bounds
    (``min``, ``min_exclusive``, ``max``, ``max_exclusive``; for strings ``max_length`` and ``pattern``, a regular expression
    the whole value must match, explained to the user by ``pattern_help``) or a public ``key`` name
    different from the attribute."""
    metadata = {"help": help, **checks}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


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


def collect_specs(cls: type, prefix: str = "", attrs: tuple[str, ...] = ()) -> list[KeySpec]:
    """Every leaf of the dataclass tree rooted at `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs: list[KeySpec] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{_key_name(f)}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            specs.extend(collect_specs(hint, key + ".", attrs + (f.name,)))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        specs.append(KeySpec(key, attrs + (f.name,), hint, dict(f.metadata), default))
    return specs


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise ValueError saying what was expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ValueError(f"expected one of {type_name(tp)}, got {shown(value)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except ValueError:
                pass
        raise ValueError(f"expected {type_name(tp)}, got {shown(value)}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {shown(value)}")
        return [coerce(v, item_type) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {shown(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected an integer, got {shown(value)}")
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {shown(value)}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond any float
                raise ValueError(f"expected a finite number, got {shown(value)}") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(f"expected a finite number, got {shown(value)}")
            return number
        raise ValueError(f"expected a number, got {shown(value)}")
    if tp is str:
        if isinstance(value, str) and "\x00" in value:  # no file or name can hold one
            raise ValueError(f"expected a string without NUL characters, got {shown(value)}")
        if isinstance(value, str) and value.strip():
            return value
        raise ValueError(f"expected a non-empty string, got {shown(value)}")
    raise ValueError(f"unsupported type {tp!r}")  # pragma: no cover - schema bug


def check_bounds(value: Any, meta: dict[str, Any]) -> None:
    if isinstance(value, str):
        _check_string(value, meta)
        return
    if value is None or isinstance(value, (list, bool)):
        return
    if "min" in meta and value < meta["min"]:
        raise ValueError(f"must be >= {meta['min']}, got {shown(value)}")
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        raise ValueError(f"must be > {meta['min_exclusive']}, got {shown(value)}")
    if "max" in meta and value > meta["max"]:
        raise ValueError(f"must be <= {meta['max']}, got {shown(value)}")
    if "max_exclusive" in meta and value >= meta["max_exclusive"]:
        raise ValueError(f"must be < {meta['max_exclusive']}, got {shown(value)}")


# Longest part of a refused string value quoted back in an error message.
QUOTE_CHARS = 40


def _check_string(value: str, meta: dict[str, Any]) -> None:
    quoted = repr(value if len(value) <= QUOTE_CHARS else value[:QUOTE_CHARS] + "...")
    if "max_length" in meta and len(value) > meta["max_length"]:
        raise ValueError(f"must be at most {meta['max_length']} characters, got {len(value)} ({quoted})")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ValueError(f"{meta.get('pattern_help', 'must match ' + meta['pattern'])}, got {quoted}")


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def choice(names: typing.Iterable[str]) -> Any:
    """The Literal type of a registry's keys: the config accepts exactly what the registry holds."""
    return Literal[tuple(names)]  # type: ignore[valid-type]
