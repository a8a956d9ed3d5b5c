"""Shared fixtures: a private cache folder per session and the real MNIST root when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _mnist_root() -> Path | None:
    candidates = [os.environ.get("LNL_DATA_ROOT"), str(REPO.parent / "shared" / "data")]
    for candidate in filter(None, candidates):
        raw = Path(candidate) / "MNIST" / "raw"
        if all((raw / name).is_file() for name in MNIST_FILES):
            return Path(candidate).resolve()
    return None


MNIST_ROOT = _mnist_root()


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Generated datasets go to a temp cache shared by the session, never into the data root."""
    cache = tmp_path_factory.mktemp("lnl-cache")
    old = os.environ.get("LNL_CACHE_DIR")
    os.environ["LNL_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("LNL_CACHE_DIR", None)
    else:
        os.environ["LNL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if MNIST_ROOT is None:
        message = "real MNIST not found (set LNL_DATA_ROOT to the folder holding MNIST/raw)"
        if os.environ.get("LNL_REQUIRE_MNIST"):
            pytest.fail(message)  # CI must not pass by skipping the end-to-end tests
        pytest.skip(message)
    return MNIST_ROOT
