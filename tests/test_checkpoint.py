import hashlib
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from lnl_cli import load_config
from lnl_cli.algorithms import TaskSpec, build_algorithm
from lnl_cli import fileio
from lnl_cli.checkpoint import (load_checkpoint, load_hashed_checkpoint, make_checkpoint, restore_algorithm,
                                save_checkpoint)
from lnl_cli.errors import CheckpointError


class Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def _saved(tmp_path, method="lnl"):
    config = load_config("colored-mnist", [f"method={method}"])
    algorithm = build_algorithm(config, TaskSpec(10, 10, 8))
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_checkpoint(algorithm, config, epoch=3))
    return config, algorithm, path


def test_checkpoint_round_trip_restores_weights(tmp_path):
    config, algorithm, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == 3 and checkpoint["config"]["method"] == "lnl"
    restored = restore_algorithm(checkpoint, config, path)
    for key, value in algorithm.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key])


def test_a_hashed_load_names_the_sha256_of_the_bytes_it_loaded(tmp_path, monkeypatch):
    _, _, path = _saved(tmp_path)
    monkeypatch.setattr(fileio, "HASH_CHUNK_BYTES", 4097)  # many chunks, the last one short
    checkpoint, digest = load_hashed_checkpoint(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == fileio.file_sha256(path)
    assert checkpoint["epoch"] == load_checkpoint(path)["epoch"] == 3
    assert fileio.file_sha256(tmp_path / "missing.pt") is None and fileio.file_sha256(tmp_path) is None
    with pytest.raises(CheckpointError, match="not found"):
        load_hashed_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_hashed_checkpoint(truncated)


def test_a_checkpoint_that_needs_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="arbitrary unpickling"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)


def test_truncated_missing_and_foreign_files_are_one_line_errors(tmp_path):
    _, _, path = _saved(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an lnl checkpoint"):
        load_checkpoint(foreign)


def test_incompatible_architecture_is_refused(tmp_path):
    config, algorithm, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint["task"]["num_classes"] = 7
    with pytest.raises(CheckpointError, match="does not fit"):
        restore_algorithm(checkpoint, config, path)
    checkpoint = load_checkpoint(path)
    checkpoint["format_version"] = 99
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(path)


# ------------------------------------------------------------------ SIGKILL while writing
WRITER = textwrap.dedent("""
    import sys, torch
    from lnl_cli.checkpoint import save_checkpoint
    path = sys.argv[1]
    save_checkpoint(path, {"format_version": 1, "config": {}, "task": {}, "model": {}, "epoch": 0})
    print("ready", flush=True)
    epoch = 1
    while True:
        payload = {"w": torch.randn(4_000_000)}
        save_checkpoint(path, {"format_version": 1, "config": {}, "task": {}, "model": payload, "epoch": epoch})
        epoch += 1
""")


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7])
@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_leaves_a_valid_checkpoint(tmp_path, delay):
    path = tmp_path / "last.pt"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    checkpoint = load_checkpoint(path)  # the old or the new file, never half of one
    assert checkpoint["format_version"] == 1


# ------------------------------------------------------------------ tampered fields
@pytest.mark.parametrize("field, value", [
    ("num_classes", 10**9), ("num_classes", -5), ("num_classes", "ten"), ("num_classes", 2.0),
    ("num_classes", True), ("num_bias_classes", 100_000), ("bias_bins", 10**12), ("in_channels", 0),
    ("input_mean", [0.0, float("nan"), 0.0]), ("input_std", [1.0, 0.0, 1.0]), ("input_mean", "abc"),
    ("class_names", ["a", "b"]), ("bias_names", [1] * 10), ("surprise", 1),
])
def test_a_tampered_task_is_a_checkpoint_error_before_any_network_is_built(tmp_path, monkeypatch, field, value):
    import lnl_cli.checkpoint as checkpoint_module

    config, _, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint["task"][field] = value

    def must_not_build(*args, **kwargs):
        raise AssertionError("a network was built from a tampered task")

    monkeypatch.setattr(checkpoint_module, "build_algorithm", must_not_build)
    with pytest.raises(CheckpointError, match="unreadable task description") as raised:
        restore_algorithm(checkpoint, config, path)
    assert field in str(raised.value) and len(str(raised.value)) < 600


def test_a_task_that_is_not_a_mapping_is_a_checkpoint_error(tmp_path):
    config, _, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint["task"] = [10, 10, 8]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="'task' must be a mapping"):
        load_checkpoint(path)


@pytest.mark.parametrize("field, value, needle", [
    ("format_version", "1", "invalid format_version '1'"), ("format_version", torch.ones(3), "invalid format_version"),
    ("format_version", 1.0, "invalid format_version 1.0"), ("epoch", -1, "epoch must be a whole number"),
    ("epoch", "3", "epoch must be a whole number"), ("epoch", torch.tensor(3), "epoch must be a whole number"),
    ("config", [1, 2], "'config' must be a mapping"), ("model", "weights", "'model' must be a mapping"),
])
def test_tampered_top_level_fields_are_checkpoint_errors(tmp_path, field, value, needle):
    _, _, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint[field] = value
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        load_checkpoint(path)


@pytest.mark.parametrize("version, kind", [("1", "str"), (1.0, "float"), (True, "bool")])
def test_a_format_version_of_another_type_says_so(tmp_path, version, kind):
    _, _, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint["format_version"] = version
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"invalid format_version {version!r} (a {kind}, not an integer)" in message
    assert "this lnl reads 1" not in message


# ------------------------------------------------------------------ messages that name what is wrong (issue 28)
def test_a_checkpoint_lacking_one_field_is_reported_missing_that_field_only(tmp_path):
    _, _, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    del checkpoint["model"]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"not an lnl checkpoint \(missing model\)$"):
        load_checkpoint(path)


def test_a_state_dict_mismatch_names_the_keys(tmp_path):
    config, _, path = _saved(tmp_path)
    checkpoint = load_checkpoint(path)
    dropped = sorted(checkpoint["model"])[0]
    del checkpoint["model"][dropped]
    checkpoint["model"]["stray.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as raised:
        restore_algorithm(checkpoint, config, path)
    message = str(raised.value)
    assert dropped in message and "stray.weight" in message and "Missing key" in message, message
    assert len(message.splitlines()) == 1
