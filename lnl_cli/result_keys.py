"""Which config keys do not change what a run computes: the one place that says so.

Three places ask: a sweep deciding whether a folder's finished run is the point it wants (and what a
resumed one may take from the command line), a resume deciding which keys may differ from the
checkpoint's, and benchmarks/reproduce.py reusing its run folders. They ask slightly different
questions, so there are two sets, the second defined from the first:

- :data:`RESULT_NEUTRAL_KEYS`: where and how a run computes (device, threads, where the data lives,
  compilation, logging), not what. Two runs that differ only in these are the same run.
- :data:`RESUME_SAFE_KEYS`: what may change when a run is resumed. The neutral keys, and the keys that
  change only the part of the run not trained yet (more or fewer epochs, how often it evaluates), so
  they leave what the checkpoint holds valid, but do change the final result.

Plain data, importing nothing: every layer may read it.
"""

from __future__ import annotations

RESULT_NEUTRAL_KEYS = frozenset({"device", "train.num_threads", "data.root", "data.download", "train.compile",
                                 "train.tensorboard"})

RESUME_SAFE_KEYS = RESULT_NEUTRAL_KEYS | frozenset({"train.epochs", "train.eval_every"})
