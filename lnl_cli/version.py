"""The package version, in a module of its own so that any module can read it without importing the API."""

__version__ = "0.1.0"

# Version of the JSON objects lnl writes (summary.json, probe.json, `--json` outputs). It changes when a
# field is renamed, removed or changes meaning; new fields may appear without a change.
JSON_SCHEMA_VERSION = 1
