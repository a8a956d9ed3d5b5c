"""`lnl config keys`: every config key with its type, default and meaning, from the schema itself."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from lnl_cli import api
from lnl_cli.cli.common import JsonOutput, print_json, result_output, stdout

app = typer.Typer(help="Inspect the config schema.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def config(ctx: typer.Context) -> None:
    """Inspect the config schema: `lnl config keys` lists every key (this help, exit 0, without a command)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command("keys")
def keys(json_output: JsonOutput = False,
         contains: str = typer.Option("", "--grep", help="Only keys containing this text.")) -> None:
    """Every key a preset, --set or key=value can set: type, default and what it does."""
    rows = [row for row in api.config_keys() if contains in row["key"]]
    with result_output():
        _print_keys(rows, json_output)


def _print_keys(rows: list[dict], json_output: bool) -> None:
    """The keys as JSON, one line each off a terminal, or a table."""
    if json_output:
        print_json(rows)
        return
    if not stdout.is_terminal:  # one line per key: greppable, never folded
        for row in rows:
            stdout.print(escape(f"{row['key']} ({row['type']}; default {row['default']!r}): {row['help']}"),
                         soft_wrap=True)
        return
    table = Table()
    for column in ("key", "type", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(escape(row["key"]), escape(row["type"]), escape(repr(row["default"])), escape(row["help"]))
    stdout.print(table)
