"""A non-editable install ships the presets inside the package."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_non_editable_install_finds_the_builtin_presets(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import lnl_cli, lnl_cli.preset_files as c; print(lnl_cli.__file__); "
                               "print(sorted(c.builtin_presets()))"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=120)
    assert probe.returncode == 0, probe.stderr
    module_path, names = probe.stdout.strip().splitlines()
    assert module_path.startswith(str(target))
    assert "colored-mnist" in names and "colored-mnist-paper" in names
