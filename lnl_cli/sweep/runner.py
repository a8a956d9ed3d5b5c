"""Running a sweep: every point not finished yet, one after another here or N at once as processes.

The sweep's own loop: it holds the sweep folder's lock, classifies the folders again under it, writes
sweep.json before the first point and after each, and turns the way the sweep ended (all finished, some
failed, a stop request) into its result or the project's exception. Nothing here prints or exits:
progress goes to a :class:`SweepCallbacks`.
"""

from __future__ import annotations

from typing import Any, Callable

from lnl_cli.callbacks import SweepCallbacks
from lnl_cli.errors import EXIT_INTERNAL, EXIT_SIGINT, LnlError, PointsFailed, TrainingInterrupted
from lnl_cli.run_folder import resume_checkpoint
from lnl_cli.runtime import StopRequest
from lnl_cli.sweep.document import SWEEP_FILE, end_point, finish_point, write_document, write_quietly
from lnl_cli.sweep.folders import SKIP, locked
from lnl_cli.sweep.plan import FAILED, FINISHED, INTERRUPTED, POINTS_NAMED, Point, SweepPlan, classify
from lnl_cli.sweep.processes import run_processes


# Trains one point in this process: (point, stop) -> the run's summary. The api passes one that calls
# its train and resume, so that a point's folder is exactly what `lnl train` writes.
PointRunner = Callable[[Point, StopRequest], dict[str, Any]]


def run_sweep(plan: SweepPlan, run_here: PointRunner, callbacks: SweepCallbacks | None = None,
              stop: StopRequest | None = None) -> dict[str, Any]:
    """Train every point not finished yet: in this process one after another (plan.jobs 1), or plan.jobs
    at once as `lnl train` subprocesses. sweep.json is written before the first point and after each.

    Returns sweep.json's content when every point finished. A failed point does not stop the others:
    PointsFailed (the first failed point's exit code) comes at the end. A stop request (Ctrl-C) stops
    starting points, lets the running ones save their checkpoints, and is a TrainingInterrupted."""
    jobs = plan.jobs
    callbacks = callbacks or SweepCallbacks()
    stop = stop or StopRequest()
    with locked(plan.out_dir):
        classify(plan)  # again, now that no other sweep can change the folders
        write_document(plan, "running")
        total = len(plan.points)
        for point in plan.points:
            if point.action == SKIP:
                callbacks.on_point_end(point, total)
        todo = [point for point in plan.points if point.action != SKIP]
        try:
            if jobs == 1:
                _run_here(plan, todo, run_here, callbacks, stop)
            else:
                run_processes(plan, todo, jobs, callbacks, stop)
        except TrainingInterrupted:  # a stop between points, before the next one started training
            write_quietly(plan, INTERRUPTED)
            raise _interrupted(plan, stop) from None
        except BaseException:
            write_quietly(plan, INTERRUPTED)
            raise
        if stop.requested:
            write_document(plan, INTERRUPTED)
            raise _interrupted(plan, stop)
        failed = [point for point in plan.points if point.status in (FAILED, INTERRUPTED)]
        data = write_document(plan, FAILED if failed else FINISHED)
    if failed:
        raise _failed(plan, failed)
    return data


def _run_here(plan: SweepPlan, todo: list[Point], run_here: PointRunner, callbacks: SweepCallbacks,
              stop: StopRequest) -> None:
    total = len(plan.points)
    for point in todo:
        if stop.requested:
            return
        stop.armed = False  # until this point's training starts, a stop stops at once: nothing to save
        callbacks.on_point_start(point, total, None)
        try:
            run_here(point, stop)
        except TrainingInterrupted as exc:
            end_point(point, INTERRUPTED, exc.exit_code, str(exc))
            if not stop.requested:  # stopped before its training started: the request was not recorded
                stop.request("SIGINT" if exc.exit_code == EXIT_SIGINT else "SIGTERM", exc.exit_code)
            callbacks.on_point_end(point, total)
            write_document(plan, "running")
            return
        except LnlError as exc:
            end_point(point, FAILED, exc.exit_code, str(exc))
        except KeyboardInterrupt:  # a second Ctrl-C: the run was abandoned mid-step
            end_point(point, INTERRUPTED, EXIT_SIGINT, "interrupted")
            callbacks.on_point_end(point, total)
            raise
        else:
            finish_point(point)
        callbacks.on_point_end(point, total)
        write_document(plan, "running")


# ---------------------------------------------------------------------------- how it ended


def _interrupted(plan: SweepPlan, stop: StopRequest) -> TrainingInterrupted:
    done = sum(point.status == FINISHED for point in plan.points)
    cut = [point.name for point in plan.points
           if point.status == INTERRUPTED and resume_checkpoint(point.run_dir).exists()]
    kept = f"; {', '.join(cut)} kept {'its checkpoint' if len(cut) == 1 else 'their checkpoints'}" if cut else ""
    return TrainingInterrupted(
        f"sweep interrupted by {stop.signal_name}: {done} of {len(plan.points)} points finished{kept}; "
        f"run the same sweep again to continue (see {plan.out_dir / SWEEP_FILE})", stop.exit_code)


def _failed(plan: SweepPlan, failed: list[Point]) -> PointsFailed:
    first = failed[0]
    listed = "; ".join(f"{point.name} (exit {point.exit_code}): {point.error}" for point in failed[:POINTS_NAMED])
    more = f"; and {len(failed) - POINTS_NAMED} more" if len(failed) > POINTS_NAMED else ""
    return PointsFailed(f"{len(failed)} of {len(plan.points)} points failed (see {plan.out_dir / SWEEP_FILE}): "
                        f"{listed}{more}", first.exit_code or EXIT_INTERNAL)
