"""lnl: train deep networks that do not learn a known bias in their data.

The public Python API (what the CLI itself calls)::

    from lnl_cli import load_config, train, evaluate
    config = load_config("colored-mnist", ["train.epochs=2", "data.train_size=2000"])
    summary = train(config, out_dir="runs/demo")
    report = evaluate("runs/demo/checkpoint.pt")
"""

__version__ = "0.1.0"

from lnl_cli.api import evaluate, load_config, train  # noqa: E402

__all__ = ["__version__", "evaluate", "load_config", "train"]
