"""The `lnl` command: one small module per subcommand, all thin over the core."""

from __future__ import annotations

import os

import typer

from lnl_cli.api import __version__
from lnl_cli.cli.common import show_warnings_as_lines
from lnl_cli.cli.compare import compare
from lnl_cli.cli.evaluate import evaluate
from lnl_cli.cli.export import export
from lnl_cli.cli.predict import predict
from lnl_cli.cli import config_keys, presets
from lnl_cli.cli.probe_bias import probe_bias
from lnl_cli.cli.sweep import sweep
from lnl_cli.cli.env import env
from lnl_cli.cli.train import train
from lnl_cli.errors import HELP_ON_EXIT_CODES

app = typer.Typer(
    name="lnl",
    help="Train deep networks that do not learn a known bias in their data "
         "(Learning Not to Learn, Kim et al., CVPR 2019).\n\n" + HELP_ON_EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("train", context_settings={"allow_interspersed_args": True})(train)
app.command("evaluate")(evaluate)
app.command("probe-bias")(probe_bias)
app.add_typer(presets.app, name="presets")
app.add_typer(config_keys.app, name="config")
app.command("compare")(compare)
app.command("export")(export)
app.command("predict")(predict)
app.command("sweep", context_settings={"allow_interspersed_args": True})(sweep)
app.command("env")(env)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lnl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    show_warnings_as_lines()


def _occupy_closed_std_fds() -> None:
    """Started with stdin, stdout or stderr closed (``>&-``), the next file this process opens would get
    that descriptor, and anything written to "stdout" would land in it (a checkpoint, say). Park
    /dev/null there; Python's own sys.stdout stays None, so a result still reports stdout as closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main() -> None:
    _occupy_closed_std_fds()
    app()
