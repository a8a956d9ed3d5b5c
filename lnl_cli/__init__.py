"""lnl: train deep networks that do not learn a known bias in their data.

The public Python API (what the CLI itself calls; see :mod:`lnl_cli.api`)::

    from lnl_cli import load_config, train, evaluate, load_model
    config = load_config("colored-mnist", ["train.epochs=2", "data.train_size=2000"])
    summary = train(config, out_dir="runs/demo")
    report = evaluate("runs/demo/checkpoint.pt")
    model = load_model("runs/demo/checkpoint.pt")
"""

from lnl_cli.version import __version__
from lnl_cli.api import compare, evaluate, load_config, load_model, probe, resume, train  # noqa: E402

__all__ = ["__version__", "compare", "evaluate", "load_config", "load_model", "probe", "resume", "train"]
