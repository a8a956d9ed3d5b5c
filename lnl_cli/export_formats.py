"""The file formats `lnl export` writes: the names users pass to --format (kept apart from the torch code
in :mod:`lnl_cli.inference`, so that the CLI can list them without loading torch)."""

EXPORT_FORMATS = ("torchscript", "onnx")
