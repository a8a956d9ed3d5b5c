"""`lnl compare` over run folders whose files were edited, truncated or written by something else."""

import hashlib
import json

import pytest

from lnl_cli import api, run_folder
from lnl_cli.errors import ConfigError

SUMMARY = {"test": {"accuracy": 0.5, "aligned_accuracy": 0.9, "conflicting_accuracy": 0.45,
                    "worst_group_accuracy": 0.1, "bias_head_accuracy": None}, "seconds": 12.5}


def _run(folder, summary=SUMMARY, probe=None, config="method: lnl\nseed: 0\n"):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    if probe is not None:
        (folder / "probe.json").write_text(probe if isinstance(probe, str) else json.dumps(probe))
    if config is not None:
        (folder / "config.yaml").write_text(config)
    return folder


def test_a_finished_run_and_its_probe_are_read(tmp_path):
    (row,) = api.compare([_run(tmp_path / "a", probe={"leakage": {"mean": 0.25, "std": 0.0}})])
    assert row["accuracy"] == 0.5 and row["leakage"] == 0.25 and row["method"] == "lnl" and row["seconds"] == 12.5


@pytest.mark.parametrize("probe", ["[1, 2]", '"leaky"', "42", "null", '{"leakage": 3}', '{"leakage": {"mean": "x"}}',
                                   '{"leakage": {"mean": NaN}}', "{", "[" * 100_000])
def test_a_probe_file_that_is_not_a_report_means_no_leakage(tmp_path, probe):
    (row,) = api.compare([_run(tmp_path / "a", probe=probe)])
    assert row["leakage"] is None and row["accuracy"] == 0.5


@pytest.mark.parametrize("summary", ["[1, 2]", '"done"', "null", "3.5", "[" * 100_000, "\xff\xfe"])
def test_a_summary_that_is_not_an_object_is_not_a_finished_run(tmp_path, summary):
    with pytest.raises(ConfigError, match="has no readable summary.json"):
        api.compare([_run(tmp_path / "a", summary=summary)])


def test_odd_values_inside_a_summary_and_config_are_shown_as_missing_or_sorted_as_text(tmp_path):
    odd = _run(tmp_path / "odd", summary={"test": 5, "seconds": "slow"}, config="- not\n- a mapping\n")
    strange = _run(tmp_path / "strange", summary={"test": {"accuracy": "high"}},
                   config="method: &m lnl\nseed: *m\n")
    fine = _run(tmp_path / "fine")
    rows = api.compare([odd, strange, fine], sort_by="method")
    assert [row["run"] for row in rows][0] == str(fine) and rows[0]["method"] == "lnl"
    for row in rows[1:]:
        assert row["accuracy"] is None and row["method"] is None and row["seconds"] is None
    mixed = _run(tmp_path / "mixed", config="method: lnl\nseed: zero\n")
    assert len(api.compare([fine, mixed], sort_by="seed")) == 2  # 0 and 'zero' in one order, no TypeError


def _probed(folder, content=b"weights v1", **report):
    """A run whose checkpoint holds `content`, with a probe.json that recorded the hash of those bytes."""
    run = _run(folder)
    checkpoint = run_folder.checkpoint_path(run)
    checkpoint.write_bytes(content)
    run_folder.write_probe(run, {"leakage": {"mean": 0.1, "std": 0.0, "ci_low": 0.0, "ci_high": 0.2},
                                 "relative_leakage": {"mean": 0.25, "ci_low": 0.0, "ci_high": 0.5},
                                 "checkpoint": str(checkpoint),
                                 "checkpoint_sha256": hashlib.sha256(content).hexdigest(), **report})
    return run, checkpoint


def test_a_probe_of_other_bytes_than_the_checkpoint_holds_now_is_stale(tmp_path):
    run, checkpoint = _probed(tmp_path / "a")
    (row,) = api.compare([run])
    assert row["probe_stale"] is False and row["leakage_ci_high"] == 0.2 and row["relative_leakage"] == 0.25
    checkpoint.write_bytes(b"weights v2")  # a resumed or retrained run
    assert api.compare([run])[0]["probe_stale"] is True
    checkpoint.unlink()
    assert api.compare([run])[0]["probe_stale"] is True


def test_staleness_is_unknown_without_a_recorded_hash_and_checked_against_the_probed_file(tmp_path):
    (old,) = api.compare([_run(tmp_path / "old", probe={"leakage": {"mean": 0.3, "std": 0.0}})])
    assert old["probe_stale"] is None and old["leakage"] == 0.3
    (hand,) = api.compare([_probed(tmp_path / "hand", checkpoint_sha256=["not", "a", "hash"])[0]])
    assert hand["probe_stale"] is None
    run, checkpoint = _probed(tmp_path / "two", checkpoint=str(tmp_path / "two" / "another.pt"))
    (run / "another.pt").write_bytes(b"weights v1")  # the file that was probed, beside the run's own
    checkpoint.write_bytes(b"something else")
    assert api.compare([run])[0]["probe_stale"] is False
