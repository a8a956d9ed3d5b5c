"""Helpers that build datasets for lnl from public sources (run with ``python -m lnl_cli.tools.<name>``)."""
