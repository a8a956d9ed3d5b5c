"""lnl: train deep networks that do not learn a known bias in their data.

The public Python API (what the CLI itself calls; see :mod:`lnl_cli.api`)::

    from lnl_cli import load_config, train, evaluate, load_model
    config = load_config("colored-mnist", ["train.epochs=3", "train.pretrain_epochs=1", "data.train_size=2000"])
    summary = train(config, out_dir="runs/demo")
    report = evaluate("runs/demo/best.pt")
    model = load_model("runs/demo/best.pt")

The names are looked up in :mod:`lnl_cli.api` on first use, so that importing the package (as the CLI
does for `lnl --version`) costs nothing.
"""

from lnl_cli.version import __version__

# `probe` and `compare` live in lnl_cli.api only: lnl_cli.probe and lnl_cli.compare are modules.
__all__ = ["__version__", "evaluate", "load_config", "load_model", "resume", "train"]


def __getattr__(name: str):
    if name in __all__:
        from lnl_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'lnl_cli' has no attribute {name!r}")
