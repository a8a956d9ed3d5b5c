"""Every command the README and docs/ show is one the tool accepts, and the Python API example runs as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from lnl_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
# The front page and every reference page: a command shown anywhere a user reads must work.
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEXTS = {path.relative_to(REPO).as_posix(): path.read_text() for path in DOCUMENTS}
README = TEXTS["README.md"]


def _blocks(language: str, text: str | None = None) -> list[str]:
    texts = [text] if text is not None else list(TEXTS.values())
    return [block for t in texts for block in re.findall(rf"```{language}\n(.*?)```", t, re.S)]


def _shell_commands() -> list[list[str]]:
    """Each command of the bash blocks of the README and docs/*.md (continuation lines joined, comments
    and redirections dropped), split into words."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|\|\|", line):
                words = shlex.split(part.split(">")[0])
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words = words[1:]  # VAR=value prefixes
                if words:
                    commands.append(words)
    return commands


LNL_COMMANDS = [words for words in _shell_commands() if words[0] == "lnl"]
SCRIPTS = [words for words in _shell_commands() if words[:1] == ["python"] and words[1].startswith("benchmarks/")]


def test_the_readme_shows_commands_at_all():
    assert len(LNL_COMMANDS) >= 10 and SCRIPTS
    readme_commands = [line for block in _blocks("bash", README) for line in block.splitlines()]
    assert any(line.startswith("pip install -e . && lnl train") for line in readme_commands)


def test_the_readme_is_a_front_page():
    """At most 12 KB, with the two setup commands and links into the reference."""
    assert len(README.encode()) <= 12 * 1024, len(README.encode())
    assert 'pip install -e ".[test]" && LNL_DATA_ROOT=../shared/data python -m pytest -q' in README
    assert "pip install -e . && LNL_DATA_ROOT=../shared/data lnl train --preset colored-mnist-fast" in README
    for link in ("docs/README.md", "benchmarks/RESULTS.md", "CHANGELOG.md"):
        assert f"]({link})" in README, link


@pytest.mark.parametrize("words", LNL_COMMANDS, ids=[" ".join(w)[:60] for w in LNL_COMMANDS])
def test_every_lnl_command_in_the_readme_parses(words):
    """Resolve the subcommand and parse every option and argument, as the CLI would, without running it."""
    command, name, args, context = typer.main.get_command(app), "lnl", list(words[1:]), None
    # Only typer's public surface: a group answers get_command; its subcommand is the next word.
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        context = command.make_context(name, [], parent=context, resilient_parsing=True)
        name, *args = args
        command = command.get_command(context, name)
        assert command is not None, f"unknown command {name!r} in {' '.join(words)}"
    command.make_context(name, args, parent=context, resilient_parsing=False)


# Runs a benchmark script up to its argument parsing and stops there: exit 0 when argparse took every
# option and value, argparse's own exit 2 when it did not. (Appending --help would not do: argparse prints
# the help and exits as soon as it meets --help, before it complains about an unknown flag.)
_PARSE_ONLY = """
import argparse, os, runpy, sys
_parse = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
    _parse(self, args, namespace)
    raise SystemExit(0)
argparse.ArgumentParser.parse_args = parse_args
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("words", SCRIPTS, ids=[w[1] for w in SCRIPTS])
@pytest.mark.slow
def test_every_benchmark_script_in_the_readme_takes_its_arguments(words):
    """The script exists, prints its help, and its argument parser accepts the command as shown."""
    script, args = REPO / words[1], words[2:]
    assert script.is_file()
    # Both at once: each spends most of its time importing torch, one core each.
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
                 for command in ([sys.executable, str(script), *args, "--help"],
                                 [sys.executable, "-c", _PARSE_ONLY, str(script), *args])]
    result, parsed = [_finished(process) for process in processes]
    assert result.returncode == 0, result.stderr
    assert parsed.returncode == 0, parsed.stderr


def _finished(process: subprocess.Popen, timeout: int = 120) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.mnist
@pytest.mark.slow
def test_the_python_api_example_runs_as_written(mnist_root, tmp_path, monkeypatch):
    (example,) = [block for block in _blocks("python", TEXTS["docs/python-api.md"])
                  if "load_config" in block and "train(" in block]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LNL_DATA_ROOT", str(mnist_root))
    namespace: dict = {}
    exec(compile(example, "docs/python-api.md", "exec"), namespace)  # noqa: S102 - the docs' own example
    assert namespace["summary"]["epochs"] == 3
    assert (tmp_path / "runs" / "demo" / "probe.json").is_file()
    assert namespace["rows"][0]["run"] == "runs/demo"
    assert not any(p.requires_grad for p in namespace["model"].parameters())
