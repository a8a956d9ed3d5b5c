"""Regenerate the parts of docs/ that are read off the code: the config keys, the commands and their
options, the exit codes. ``python docs/generate.py`` rewrites them in place; ``--check`` only says whether
the committed files are current (tests/test_docs.py runs the same comparison).

A generated part sits between ``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->``;
the text around it is written by hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

DOCS = Path(__file__).resolve().parent

def _cell(value: Any) -> str:
    """Text for one Markdown table cell: pipes escaped, one line."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _value(value: Any) -> str:
    """A default as a preset would write it (YAML's null, true, false; strings bare)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def config_keys() -> str:
    from lnl_cli.api import config_keys as rows

    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for row in rows():
        lines.append(f"| `{row['key']}` | {_cell(row['type'])} | `{_cell(_value(row['default']))}` | {_cell(row['help'])} |")
    return "\n".join(lines)


def _commands() -> list[tuple[str, Any]]:
    """(full name, command) of every `lnl` command and subcommand, in the order `lnl --help` lists them."""
    import typer

    from lnl_cli.cli import app

    found: list[tuple[str, Any]] = []

    def walk(command: Any, name: str, parent: Any) -> None:
        context = command.make_context(name.rsplit(" ", 1)[-1], [], parent=parent, resilient_parsing=True)
        if hasattr(command, "list_commands"):
            found.append((name, command))
            for sub in command.list_commands(context):
                walk(command.get_command(context, sub), f"{name} {sub}", context)
        else:
            found.append((name, command))

    walk(typer.main.get_command(app), "lnl", None)
    return found


def _param_name(param: Any) -> str:
    if param.param_type_name == "argument":
        return (param.metavar or param.name.upper()).strip()
    names = ", ".join([*param.opts, *param.secondary_opts])
    if not getattr(param, "is_flag", False) and param.metavar:
        names += f" {param.metavar}"
    return names


def cli_reference() -> str:
    out: list[str] = []
    for name, command in _commands():
        out.append(f"### `{name}`\n")
        text = (command.help or "").strip()
        if text:
            out.append(re.sub(r"\s*\n\s*", " ", text.split("\n\n")[0]) + "\n")
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            out.append("| argument or option | default | meaning |")
            out.append("|---|---|---|")
            for param in params:
                default = param.default
                shown = "" if default in (None, (), [], "") or param.required else f"`{_cell(_value(default))}`"
                if param.required:
                    shown = "required"
                out.append(f"| `{_cell(_param_name(param))}` | {shown} | {_cell(param.help or '')} |")
            out.append("")
    return "\n".join(out).rstrip()


def exit_codes() -> str:
    from lnl_cli import errors

    lines = ["| code | name in `lnl_cli.errors` | meaning |", "|---|---|---|"]
    for code in errors.ALL_EXIT_CODES:
        lines.append(f"| {code.value} | `{code.name}` | {code.meaning} |")
    return "\n".join(lines)


# file -> block name -> the function that writes the block
BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "config.md": {"config-keys": config_keys},
    "cli.md": {"commands": cli_reference, "exit-codes": exit_codes},
}

_BLOCK = re.compile(r"<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n(?P<body>.*?)\n?<!-- END GENERATED: (?P=name) -->", re.S)


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of a doc file's text, by name."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def render(filename: str, text: str) -> str:
    """`text` with each of its generated blocks rewritten from the code."""
    makers = BLOCKS[filename]
    missing = set(makers) - set(blocks(text))
    if missing:
        raise SystemExit(f"docs/{filename} lacks the markers of {sorted(missing)}")
    return _BLOCK.sub(lambda m: f"<!-- BEGIN GENERATED: {m['name']} -->\n{makers[m['name']]()}\n"
                             f"<!-- END GENERATED: {m['name']} -->", text)


def main(argv: list[str]) -> int:
    stale = []
    for filename in BLOCKS:
        path = DOCS / filename
        text = path.read_text()
        new = render(filename, text)
        if new != text:
            stale.append(filename)
            if "--check" not in argv:
                path.write_text(new)
    if stale:
        print(("stale: " if "--check" in argv else "rewrote: ") + ", ".join(f"docs/{f}" for f in stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
