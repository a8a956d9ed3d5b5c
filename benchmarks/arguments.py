"""Argument types the benchmark scripts share (argparse `type=`): a bad value is argparse's one-line
usage error, exit 2."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_method_overrides(parser: argparse.ArgumentParser) -> None:
    """--set-for METHOD KEY=VALUE ...: overrides for one method's runs (repeatable); see method_overrides."""
    parser.add_argument("--set-for", dest="method_overrides", nargs="+", action="append", default=[],
                        metavar=("METHOD", "KEY=VALUE"), help="overrides for one method's runs (repeatable)")


def method_overrides(parser: argparse.ArgumentParser, given: list[list[str]], methods) -> dict[str, list[str]]:
    """The --set-for lists joined per method; an unknown method is argparse's usage error (exit 2)."""
    per_method: dict[str, list[str]] = {}
    for method, *overrides in given:
        if method not in methods:
            parser.error(f"--set-for: unknown method {method!r} (one of {', '.join(sorted(methods))})")
        per_method.setdefault(method, []).extend(overrides)
    return per_method
