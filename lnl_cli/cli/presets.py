"""`lnl presets`: the built-in presets, one line each."""

from __future__ import annotations
from rich.markup import escape

from lnl_cli.cli.common import JsonOutput, print_json, result_output, stdout
from lnl_cli import api


def print_presets(json_output: bool) -> None:
    presets = api.presets()
    with result_output():
        if json_output:
            print_json([{"name": name, "description": text} for name, text in presets.items()])
            return
        width = max(map(len, presets), default=0)
        for name, text in presets.items():
            stdout.print(escape(f"{name:<{width}}  {text}"), soft_wrap=True)


def presets(json_output: JsonOutput = False) -> None:
    """List the built-in presets with a one-line description."""
    print_presets(json_output)
