"""The grid of `lnl sweep --grid KEY=V1,V2,...`: how its text is split into axes and values.

Apart from the plan because it is pure text handling (no config is loaded, nothing is read from disk):
a value may be a bracketed list or a quoted string holding commas, and every malformed axis is
reported, not only the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from lnl_cli import config as config_module
from lnl_cli.errors import shown


@dataclass(frozen=True)
class Axis:
    """One --grid KEY=V1,V2,...: the key and each value as typed (read like a ``key=value`` override)."""

    key: str
    texts: tuple[str, ...]


def split_values(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and quotes: ``0.1,[1,2],'a,b'`` is three values.
    ValueError when a bracket or quote is left open or closed too often."""
    values, current, depth, quote, escaped = [], [], 0, None, False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"'{char}' closes a bracket that was not opened")
        elif char == "," and depth == 0:
            values.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote is not None:
        raise ValueError(f"a {quote} quote is not closed")
    if depth:
        raise ValueError("a bracket is not closed")
    values.append("".join(current))
    return values


def parse_grid(texts: Iterable[str]) -> tuple[list[Axis], list[str]]:
    """The axes of ``KEY=V1,V2,...`` texts, and the problems found (all of them, not the first)."""
    axes: list[Axis] = []
    problems: list[str] = []
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--grid {shown(text)} is not of the form KEY=V1,V2,...")
            continue
        try:
            values = [value.strip() for value in split_values(raw)]
        except ValueError as exc:
            problems.append(f"--grid {key}: {exc} in {shown(raw)}")
            continue
        if any(not value for value in values):
            problems.append(f"--grid {key}: empty value in {shown(raw)} (give V1,V2,...; null for no value)")
            continue
        axes.append(Axis(canonical_key(key), tuple(values)))
    return axes, problems


def canonical_key(key: str) -> str:
    """A config key under its current name (an old name, such as data.name, still accepted)."""
    return config_module.LEGACY_KEYS.get(key, key)


def _override_key(text: str) -> str | None:
    key, sep, _ = text.partition("=")
    return canonical_key(key.strip()) if sep and key.strip() else None


def duplicate_keys(axes: list[Axis], set_values: list[str]) -> list[str]:
    """A key given as two axes, or as an axis and a fixed value: one problem each."""
    problems = []
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            problems.append(f"--grid {axis.key} is given twice; give all its values in one --grid {axis.key}=V1,V2,...")
        seen.add(axis.key)
    fixed = {key for key in map(_override_key, set_values) if key is not None}
    problems += [f"{key} is both a --grid axis and a fixed value (--set); give it once"
                 for key in sorted(seen & fixed)]
    return problems
