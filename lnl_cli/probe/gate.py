"""The gate of `lnl probe-bias --max-leakage`: a verdict from the upper ends of the intervals.

Apart from the report because it is the one decision made from it, and the rule (compare the upper
bound, never the point estimate; a missing bound fails) is the part a user relies on for CI.
"""

from __future__ import annotations

import math
from typing import Any

from lnl_cli.probe_settings import CONFIDENCE

GATE_BOUND = f"upper_{round(CONFIDENCE * 100)}"  # what `gate.bound` says the gate compared


def gate(result: dict[str, Any], max_leakage: float | None,
         max_relative_leakage: float | None = None) -> dict[str, Any]:
    """The verdict: each given threshold is compared with the UPPER end of its CONFIDENCE interval, so that
    the gate passes only when the data rule out leakage above it. A missing bound (no ceiling, or an
    unbounded ratio) fails. `passed` is None when no threshold is given."""
    def within(bound: float | None, threshold: float) -> bool:
        return bound is not None and math.isfinite(bound) and bound <= threshold

    leakage_bound = result["leakage"]["ci_high"]
    relative_bound = (result.get("relative_leakage") or {}).get("ci_high")
    checks = []
    if max_leakage is not None:
        checks.append(within(leakage_bound, max_leakage))
    if max_relative_leakage is not None:
        checks.append(within(relative_bound, max_relative_leakage))
    return {"bound": GATE_BOUND, "confidence": CONFIDENCE,
            "max_leakage": max_leakage, "leakage_bound": leakage_bound,
            "max_relative_leakage": max_relative_leakage, "relative_leakage_bound": relative_bound,
            "passed": all(checks) if checks else None}
