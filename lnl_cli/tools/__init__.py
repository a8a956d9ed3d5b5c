"""Helpers that build datasets for lnl from public sources (run with ``python -m lnl_cli.tools.<name>``)."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from lnl_cli.errors import LnlError


def one_line_errors(main: Callable[[list[str] | None], None]) -> Callable[[list[str] | None], None]:
    """A tool's user errors end as one `Error: ...` line on stderr with the project's exit code,
    like the `lnl` commands, instead of a traceback."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> None:
        try:
            main(argv)
        except LnlError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None

    return wrapped
