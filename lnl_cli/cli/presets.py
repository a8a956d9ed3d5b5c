"""`lnl presets`: the built-in presets, one line each; `lnl presets show NAME`: one in full."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from lnl_cli import api
from lnl_cli.cli.common import (JsonOutput, Overrides, print_json, result_output, stderr, stdout, user_errors,
                                write_stdout)

app = typer.Typer(help="List the built-in presets, or show one.", no_args_is_help=False)


def print_presets(json_output: bool) -> None:
    presets = api.presets()
    with result_output():
        if json_output:
            print_json([{"name": name, "description": text} for name, text in presets.items()])
            return
        width = max(map(len, presets), default=0)
        for name, text in presets.items():
            stdout.print(escape(f"{name:<{width}}  {text}"), soft_wrap=True)


@app.callback(invoke_without_command=True)
def presets(ctx: typer.Context, json_output: JsonOutput = False) -> None:
    """List the built-in presets with a one-line description (`lnl presets show NAME` for one in full)."""
    if ctx.invoked_subcommand is None:
        print_presets(json_output)


@app.command("show")
def show(name: Optional[str] = typer.Argument(None, help="Built-in preset name or path to a YAML preset; "
                                                         "none: the list of built-in presets."),
         overrides: Overrides = None, json_output: JsonOutput = False) -> None:
    """A preset as a run would use it: its header, then every key after `extends` and overrides."""
    if name is None:
        stderr.print("which preset? `lnl presets show NAME` shows one of these:")
        print_presets(json_output)
        return
    with user_errors():
        shown = api.show_preset(name, overrides or [])
    with result_output():
        if json_output:
            print_json({key: shown[key] for key in ("schema_version", "preset", "path", "header", "config")})
        else:
            write_stdout((shown["header"] + "\n" if shown["header"] else "") + shown["yaml"])
