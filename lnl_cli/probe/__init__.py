"""Bias leakage: how well a *fresh* classifier recovers the bias from frozen features.

LNL's own bias head sitting at chance proves little (an adversary can be fooled while the
information is still there; Elazar & Goldberg, 2018). Here a new probe is trained on half of a
source where bias and label are independent and scored on the other, disjoint half.

Two things make the number usable as a gate:

- a ceiling: the same probes on the input images say how much of the bias is recoverable from the
  data at all, so ``relative_leakage`` = leakage at the layer / leakage at the input says how much of
  it the layer kept (an absolute 0.3 means little if the input itself only gives 0.35);
- an interval: the held-out samples are a sample, so every probe's per-sample right/wrong is
  bootstrapped (resampled with a seeded generator) and the gate compares the *upper* end of the 95%
  interval with its threshold. A gate on the point estimate passes a leaky model about half the time
  when its true leakage sits at the threshold; on the upper bound it does so rarely.

One module per step, lowest first: :mod:`.features` (what the probes read), :mod:`.estimates` (balanced
leakage, bootstrap, intervals, means), :mod:`.fit` (one probe: split, train, calibrate, score),
:mod:`.gate` (the verdict), :mod:`.report` (every probe pooled, a checkpoint's report). The names below
are what the rest of lnl, the benchmarks and the tests use.
"""

from __future__ import annotations

from lnl_cli.probe.estimates import (BOOTSTRAP_RESAMPLES, DEPENDENCE_WARN_CRAMERS_V, balanced_leakage,
                                     bootstrap_leakage, label_bias_dependence)
from lnl_cli.probe.features import (INPUT_MAX_SIDE, PIXELS_VIEW, extract_features, extract_input_views, input_views,
                                    source_split)
from lnl_cli.probe.fit import SplitProbes, probe_split, score_probe, stratified_halves, train_probe
from lnl_cli.probe.gate import GATE_BOUND, gate
from lnl_cli.probe.report import probe_checkpoint, probe_features
from lnl_cli.probe_settings import ProbeSettings

__all__ = ["BOOTSTRAP_RESAMPLES", "DEPENDENCE_WARN_CRAMERS_V", "GATE_BOUND", "INPUT_MAX_SIDE", "PIXELS_VIEW",
           "ProbeSettings", "SplitProbes", "balanced_leakage", "bootstrap_leakage", "extract_features",
           "extract_input_views", "gate", "input_views", "label_bias_dependence", "probe_checkpoint", "probe_features",
           "probe_split", "score_probe", "source_split", "stratified_halves", "train_probe"]
