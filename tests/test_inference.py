"""Models that leave the tool: `lnl export` and `lnl predict` agree with `lnl evaluate`."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from lnl_cli import api, load_config
from lnl_cli.data import load_dataset

from helpers import assert_one_line_error, assert_output_error, lnl, lnl_all, lnl_in_process, lnl_to, save

# 200 validation digits, not the default 5,000: the tests read last.pt, whichever epoch validation picks
TINY = ["data.train_size=600", "data.test_size=300", "data.val_size=200", "train.epochs=2", "train.pretrain_epochs=1"]
FP32 = ["train.precision=fp32"]  # what the exported files compute in, whatever this CPU prefers


@pytest.fixture(scope="module", params=["lnl", "gray"])
def trained(request, tmp_path_factory):
    """A tiny run per method; gray checks that the algorithm's own input transform is exported too."""
    root = request.getfixturevalue("mnist_root")
    out = tmp_path_factory.mktemp(request.param) / "run"
    config = load_config("colored-mnist", [*TINY, f"method={request.param}", f"data.root={root}"])
    api.train(config, out)
    test = load_dataset(config, with_train=False).test
    return out / "last.pt", test.images.float() / 255.0, test.labels


def _correct(probabilities: torch.Tensor, labels: torch.Tensor) -> int:
    return int((probabilities.argmax(dim=1) == labels).sum())


@pytest.mark.mnist
@pytest.mark.slow
def test_torchscript_export_agrees_with_evaluate(trained, tmp_path):
    checkpoint, images, labels = trained
    result = lnl("export", "-c", str(checkpoint), "--format", "torchscript", "-o", str(tmp_path / "m.pt"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input_shape"] == ["N", 3, 28, 28]
    probabilities = torch.jit.load(str(tmp_path / "m.pt"))(images)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(images)), atol=1e-5)
    report = api.evaluate(checkpoint, overrides=FP32)
    assert _correct(probabilities, labels) == round(report["accuracy"] * len(labels))


@pytest.mark.mnist
@pytest.mark.slow
def test_onnx_export_agrees_with_torchscript_and_evaluate(trained, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="pip install 'lnl[onnx]' to check ONNX exports")
    checkpoint, images, labels = trained
    assert lnl("export", "-c", str(checkpoint), "--format", "onnx", "-o", str(tmp_path / "m.onnx")).returncode == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    probabilities = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    reference = api.evaluate(checkpoint, overrides=FP32)
    assert _correct(probabilities, labels) == round(reference["accuracy"] * len(labels))
    exported = api.export(checkpoint, "torchscript", tmp_path / "m.pt")
    assert torch.allclose(probabilities, torch.jit.load(exported["out"])(images), atol=1e-4)


@pytest.mark.mnist
@pytest.mark.slow
def test_predict_reads_files_folders_and_csvs_and_matches_the_exported_model(trained, tmp_path):
    checkpoint, images, _ = trained
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        save((images[i] * 255).round().to(torch.uint8), folder / f"{i}.png")
    (tmp_path / "list.csv").write_text("path\n" + "".join(f"images/{i}.png\n" for i in range(5)))
    from_folder, from_csv = lnl_all(["predict", "-c", str(checkpoint), str(folder)],
                                    ["predict", "-c", str(checkpoint), str(tmp_path / "list.csv"), "-o", str(tmp_path / "p.csv")])
    assert from_folder.returncode == 0 and from_csv.returncode == 0, (from_folder.stderr, from_csv.stderr)
    rows = list(csv.DictReader(io.StringIO(from_folder.stdout)))
    assert [r["path"] for r in rows] == [str(folder / f"{i}.png") for i in range(5)]
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in csv.DictReader((tmp_path / "p.csv").open())]
    api.export(checkpoint, "torchscript", tmp_path / "m.pt")
    expected = torch.jit.load(str(tmp_path / "m.pt"))(images[:5]).argmax(dim=1).tolist()
    assert [int(r["prediction"]) for r in rows] == expected
    assert all(abs(sum(float(r[f"p_{k}"]) for k in range(10)) - 1) < 1e-4 for r in rows)


@pytest.mark.slow
def test_export_and_predict_refuse_bad_input_with_one_line_errors(tmp_path):
    missing = str(tmp_path / "none.pt")
    exported, keras, predicted = lnl_all(["export", "-c", missing, "-o", str(tmp_path / "m.pt")],
                                         ["export", "-c", missing, "--format", "keras", "-o", str(tmp_path / "m")],
                                         ["predict", "-c", missing, str(tmp_path)])
    assert_one_line_error(exported, 4, "not found")
    assert_one_line_error(keras, 2, "torchscript")
    assert_one_line_error(predicted, 4)


@pytest.mark.mnist
@pytest.mark.slow
def test_predict_and_export_errors_name_the_file(trained, tmp_path):
    checkpoint = str(trained[0])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "list.csv").write_text("file\nx.png\n")
    nope, broken, listing, unwritable = lnl_all(["predict", "-c", checkpoint, str(tmp_path / "nope.png")],
                                                ["predict", "-c", checkpoint, str(tmp_path / "broken.png")],
                                                ["predict", "-c", checkpoint, str(tmp_path / "list.csv")],
                                                ["export", "-c", checkpoint, "-o", "/proc/lnl-cannot-write/m.pt"])
    assert_one_line_error(nope, 3, "nope.png")
    assert_one_line_error(broken, 3, "broken.png")
    assert_one_line_error(listing, 3, "'path' column")
    assert_one_line_error(unwritable, 74, "cannot write")


# ------------------------------------------------------------------ --out and stdout (issue 28), without MNIST
@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A run folder with an untrained baseline's last.pt and best.pt, and one 28 px image: enough to export
    and predict, in a second."""
    from lnl_cli.algorithms import TaskSpec, build_algorithm
    from lnl_cli.checkpoint import make_checkpoint, save_checkpoint

    folder = tmp_path_factory.mktemp("untrained")
    run = folder / "run"
    run.mkdir()
    config = load_config("colored-mnist", ["method=baseline"])
    checkpoint = make_checkpoint(build_algorithm(config, TaskSpec(10, 10, 8), load_pretrained=False), config, epoch=1)
    save_checkpoint(run / "last.pt", checkpoint)
    save_checkpoint(run / "best.pt", checkpoint)
    save(torch.full((3, 28, 28), 128, dtype=torch.uint8), folder / "digit.png")
    return run, folder / "digit.png"


def test_export_and_predict_refuse_to_overwrite_a_run_s_files_without_force(untrained_run, tmp_path):
    run, image = untrained_run
    best = (run / "best.pt").read_bytes()
    refused = lnl_in_process("export", "-c", str(run / "last.pt"), "--format", "torchscript", "--out", str(run / "best.pt"))
    assert_one_line_error(refused, 2, "would overwrite best.pt of the run folder", "--force")
    assert (run / "best.pt").read_bytes() == best
    outside = tmp_path / "copy.pt"
    outside.write_bytes(best)  # a checkpoint outside any run folder is a checkpoint all the same
    refused = lnl_in_process("predict", "-c", str(run), str(image), "--out", str(outside))
    assert_one_line_error(refused, 2, f"would overwrite the checkpoint {outside}")
    assert outside.read_bytes() == best
    exported = tmp_path / "model.pt"
    for _ in range(2):  # an exported model is no checkpoint: exporting again replaces it
        assert lnl_in_process("export", "-c", str(run), "--out", str(exported)).returncode == 0
    forced = lnl_in_process("predict", "-c", str(run), str(image), "--out", str(outside), "--force")
    assert forced.returncode == 0 and outside.read_text().startswith("path,prediction,confidence")
    folder = lnl_in_process("export", "-c", str(run), "--out", str(tmp_path))
    assert_one_line_error(folder, 2, "is a folder")


def test_predict_out_through_a_symlink_keeps_the_link(untrained_run, tmp_path):
    run, image = untrained_run
    (tmp_path / "keep.txt").write_text("old\n")
    (tmp_path / "link.csv").symlink_to("keep.txt")
    result = lnl_in_process("predict", "-c", str(run), str(image), "--out", str(tmp_path / "link.csv"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "keep.txt").read_text().startswith("path,prediction")


@pytest.mark.slow
@pytest.mark.parametrize("stdout, args", [
    ("broken-pipe", ["predict", "-c", "RUN", "IMAGE"]), ("closed", ["predict", "-c", "RUN", "IMAGE", "--json"]),
    ("full", ["export", "-c", "RUN", "--out", "MODEL", "--json"]), ("full", ["config", "keys", "--json"]),
])
def test_predict_export_and_config_keys_exit_74_when_stdout_cannot_be_written(untrained_run, tmp_path, stdout, args):
    run, image = untrained_run
    names = {"RUN": str(run), "IMAGE": str(image), "MODEL": str(tmp_path / "m.pt")}
    assert_output_error(lnl_to(stdout, *[names.get(arg, arg) for arg in args]), stdout)


def test_a_csv_row_with_an_empty_path_is_refused_not_dropped(untrained_run, tmp_path):
    run, image = untrained_run
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,note\n{image},first\n,second\n{image},third\n")
    result = lnl_in_process("predict", "-c", str(run), str(listing))
    assert_one_line_error(result, 3, f"{listing} line 3", "'path' cell is empty")


def test_predict_silences_pillow_s_decompression_bomb_warning_as_training_does(untrained_run, monkeypatch):
    import warnings

    from PIL import Image

    run, image = untrained_run
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the 28 x 28 image is a "bomb" of 784 pixels now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = api.predict(run, [image])
    assert len(rows) == 1
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
