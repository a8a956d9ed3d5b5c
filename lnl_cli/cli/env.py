"""`lnl env`: what this machine runs lnl with, for bug reports."""

from __future__ import annotations

from rich.markup import escape

from lnl_cli import api
from lnl_cli.cli.common import JsonOutput, print_json, result_output, stdout


def env(json_output: JsonOutput = False) -> None:
    """Versions (lnl, Python, torch and every optional package), the CPU and whether it runs bf16
    natively, torch's threads, CUDA devices, $LNL_DATA_ROOT (and whether MNIST is there) and the cache
    folder: paste it into a bug report."""
    report = api.environment()
    with result_output():
        if json_output:
            print_json(report)
            return
        packages = ", ".join(f"{name} {version or '-'}" for name, version in report["packages"].items())
        for label, value in (("lnl", report["lnl"]), ("python", f"{report['python']} ({report['platform']})"),
                             ("packages", packages),
                             ("cpu", f"{report['cpu']}, {report['cpu_cores']} cores, torch threads "
                                     f"{report['torch_threads']}, native bf16: {report['cpu_native_bf16']}"),
                             ("cuda", ", ".join(report["cuda"]) or "none"),
                             ("LNL_DATA_ROOT", f"{report['data_root_env'] or '(not set)'}; MNIST found: "
                                               f"{report['mnist_found']}"),
                             ("cache", report["cache_dir"])):
            stdout.print(escape(f"{label:<14}{value}"), soft_wrap=True)
