"""`lnl sweep`: many runs from one grid of config values, each an ordinary run folder.

    DIR/
      sweep.json                 the points, their overrides, folders, status and results (the last sweep run here)
      .lnl-sweep.lock            held (flock) while a sweep runs into DIR: one sweep per folder at a time
      <name>-<method>-<k><v>...  one run folder per point, as `lnl train --out` writes it

The grid is the Cartesian product of ``KEY=V1,V2,...`` axes; each value is read like a ``key=value``
override, and a value may be a bracketed list (``data.mean=[0.5,0.5,0.5],[0.4,0.4,0.4]``). Every point's
config and folder is checked before anything trains, and all problems of all points are one
ConfigError. A point whose folder holds a finished run of the same config is skipped, one with a
checkpoint but no summary is resumed, one whose folder holds another config is an error.

Points run one after another in this process (through the `train` and `resume` functions the caller
passes: the api's), or N at once as `lnl train` subprocesses. Nothing here prints or exits: progress goes
to a :class:`SweepCallbacks`, failures are the project's exceptions.

One module per concern, lowest first: :mod:`.grid` (the --grid text), :mod:`.folders` (what a run
folder holds, the sweep folder's lock), :mod:`.plan` (points, their names and actions), :mod:`.document`
(sweep.json), :mod:`.processes` (N points at once), :mod:`.runner` (the sweep's loop). The names below
are what the rest of lnl uses.
"""

from __future__ import annotations

from lnl_cli.sweep.document import SWEEP_FILE, document, write_document
from lnl_cli.sweep.folders import (LOCK_FILE, RESUME, SKIP, TRAIN, FolderCheck, check_folder, locked, point_result,
                                   stored_config)
from lnl_cli.sweep.grid import Axis, parse_grid, split_values
from lnl_cli.sweep.plan import (FAILED, FINISHED, INTERRUPTED, PENDING, Point, SweepPlan, classify, folder_name,
                                plan_sweep)
from lnl_cli.sweep.processes import train_command
from lnl_cli.sweep.runner import PointRunner, run_sweep

__all__ = ["Axis", "FAILED", "FINISHED", "FolderCheck", "INTERRUPTED", "LOCK_FILE", "PENDING", "Point", "PointRunner",
           "RESUME", "SKIP", "SWEEP_FILE", "SweepPlan", "TRAIN", "check_folder", "classify", "document", "folder_name",
           "locked", "parse_grid", "plan_sweep", "point_result", "run_sweep", "split_values", "stored_config",
           "train_command", "write_document"]
