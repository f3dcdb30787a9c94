import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clsclip.cli import main
from clsclip.labelling import list_inputs
from tests.conftest import random_rgb


def test_segment_writes_masks_overlay_and_summary(saved_model, tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(random_rgb(37, 53, seed=1)).save(images / "a.png")
    Image.fromarray(random_rgb(20, 30, seed=2)).save(images / "b.jpg")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    status = main(
        [
            "segment",
            str(images),
            "--classes",
            "dog",
            "hot dog",
            "--model",
            str(saved_model),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    mask = np.asarray(Image.open(out / "a_mask01_hot_dog.png"))
    assert mask.shape == (37, 53) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(out / "b_overlay.png").size == (30, 20)
    summary = json.loads((out / "a.json").read_text())
    assert [c["name"] for c in summary["classes"]] == ["dog", "hot dog"]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [entry["image"] for entry in manifest] == [str(images / "a.png"), str(images / "b.jpg")]
    assert [entry["key"] for entry in manifest] == ["a.png", "b.jpg"]
    assert manifest[0]["status"] == "ok" and manifest[0]["size"] == [37, 53]
    assert json.loads((out / "run.json").read_text())["classes"] == ["dog", "hot dog"]
    assert sorted(manifest[1]["outputs"]) == [
        "b.json",
        "b_mask00_dog.png",
        "b_mask01_hot_dog.png",
        "b_overlay.png",
    ]


def test_threads_flag_is_the_runs_own(saved_model, tmp_path) -> None:
    """`main()` called in a process (tests, notebooks) leaves torch's thread count as it was:
    a leaked ``--threads 1`` changed later runs' logits in their last bits."""
    import torch

    Image.fromarray(random_rgb(20, 30, seed=2)).save(tmp_path / "a.png")
    before = torch.get_num_threads()
    argv = ["segment", str(tmp_path / "a.png"), "--classes", "dog", "--model", str(saved_model)]
    assert main([*argv, "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    assert torch.get_num_threads() == before


CLASSES_YAML = """
# the classes of one labelling job
dog: [dog, puppy]
cat:
  prompts: [cat, kitten]
  negatives: [a statue of a cat]
  threshold: 0.45
tree:
"""
SPECS = {
    "dog": ["dog", "puppy"],
    "cat": {"prompts": ["cat", "kitten"], "negatives": ["a statue of a cat"], "threshold": 0.45},
    "tree": None,
}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_classes_file_equals_the_same_specs_in_python(saved_model, tmp_path, suffix) -> None:
    from clsclip import Segmenter

    classes = tmp_path / f"classes{suffix}"
    classes.write_text(CLASSES_YAML if suffix == ".yaml" else json.dumps(SPECS))
    Image.fromarray(random_rgb(40, 56, seed=3)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path / "a.png"), "--classes-file", str(classes), "--model",
            str(saved_model), "--out", str(out), "--format", "label", "npz", "coco"]  # fmt: skip
    assert main([*argv, "--threshold", "0.4", "--min-score", "0.1"]) == 0
    expected = Segmenter.from_pretrained(saved_model).segment(
        tmp_path / "a.png", SPECS, threshold=0.4, min_score=0.1
    )
    assert expected.thresholds == {"dog": 0.4, "cat": 0.45, "tree": 0.4}
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a_label.png")), expected.label_map)
    with np.load(out / "a.npz") as saved:
        np.testing.assert_array_equal(saved["logits"], expected.low_res_logits.numpy())
    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["dog", "cat", "tree"]
    run = json.loads((out / "run.json").read_text())
    assert run["classes"] == [
        {"name": "dog", "prompts": ["dog", "puppy"]},
        {"name": "cat", "prompts": ["cat", "kitten"], "negatives": ["a statue of a cat"],
         "threshold": 0.45},
        "tree",
    ] and run["min_score"] == 0.1  # fmt: skip
    # another spec is another run: --resume refuses it
    classes.write_text(CLASSES_YAML.replace("kitten", "kitty") if suffix == ".yaml"
                       else json.dumps({**SPECS, "dog": ["dog"]}))  # fmt: skip
    assert main([*argv, "--threshold", "0.4", "--min-score", "0.1", "--resume"]) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- dog\n- cat\n",
            "must be a mapping from class names to prompts (see docs/calibration.md), got list",
        ),
        (
            "",
            "must be a mapping from class names to prompts (see docs/calibration.md), got an "
            "empty file",
        ),
        ("dog: [\n", "cannot be parsed"),
        ("dog: []\n", "class 'dog': the prompt list is empty"),
        ("dog: {prompts: [dog], negatives: [dog]}\n", "'dog' is both a prompt and a negative"),
        ("dog: {threshold: 2}\n", "class 'dog': threshold must be a number in [0, 1], got 2"),
        ("1: one\n'1': other\n", "names '1' twice"),  # one name, spelled two ways
        ("dog: a\ncat: b\ndog: c\n", "names 'dog' twice"),  # before: the last won silently
    ],
)
def test_bad_classes_files_are_one_line_errors(saved_model, tmp_path, capsys, text, message):
    classes = tmp_path / "classes.yaml"
    classes.write_text(text)
    Image.fromarray(random_rgb(20, 30, seed=2)).save(tmp_path / "a.png")
    argv = ["segment", str(tmp_path / "a.png"), "--classes-file", str(classes), "--model",
            str(saved_model), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and str(classes) in err and err.count("\n") == 1


def test_classes_file_names_are_read_as_written(tmp_path) -> None:
    """YAML keys are the names as written: ``no``, ``on``, ``~`` and ``1`` are class names,
    not False, True, None and 1; JSON keys likewise, and a duplicate JSON key is refused."""
    from clsclip.classes import read_classes_file

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("no: [the word no]\non:\n~: tilde\n1: one\nyes: y\n")
    specs = read_classes_file(yaml_file)
    assert [s.name for s in specs] == ["no", "on", "~", "1", "yes"]
    assert specs[0].prompts == ("the word no",) and specs[2].prompts == ("tilde",)
    json_file = tmp_path / "c.json"
    json_file.write_text('{"dog": "a dog", "dog": "a hound"}')
    with pytest.raises(ValueError, match="names 'dog' twice"):
        read_classes_file(json_file)


def test_bad_image_is_reported_and_others_still_written(saved_model, tmp_path, capsys) -> None:
    Image.fromarray(random_rgb(10, 10)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    status = main(
        [
            "segment",
            str(tmp_path / "bad.png"),
            str(tmp_path / "good.png"),
            "--classes",
            "dog",
            "--model",
            str(saved_model),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 1
    assert (tmp_path / "out" / "good.json").exists()
    assert "1 of 2 image(s) failed" in capsys.readouterr().err


def test_usage_errors(saved_model, tmp_path, capsys) -> None:
    Image.fromarray(random_rgb(10, 10)).save(tmp_path / "x.png")
    base = ["segment", str(tmp_path / "x.png"), "--out", str(tmp_path / "out")]
    assert main([*base, "--classes", "dog", "--model", str(tmp_path / "missing")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main([*base, "--classes", "dog", "Dog", "--model", str(saved_model)]) == 2
    assert "duplicate class name" in capsys.readouterr().err
    assert main([*base, "--classes", "dog", "--model", str(saved_model), "--threshold", "3"]) == 2
    assert "threshold" in capsys.readouterr().err
    argv = [*base, "--classes", "dog", "--model", str(saved_model), "--max-image-pixels", "-5"]
    assert main(argv) == 2
    assert "--max-image-pixels must be >= 0, got -5" in capsys.readouterr().err


def test_helpers(tmp_path) -> None:
    (tmp_path / "b.PNG").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(b"")
    assert [i.path for i in list_inputs([tmp_path], base=None)] == [
        tmp_path / "a.jpg",
        tmp_path / "b.PNG",
    ]


def test_console_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clsclip", "segment", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--classes" in result.stdout


def test_segment_with_boxes_file(saved_model, tmp_path) -> None:
    Image.fromarray(random_rgb(60, 80)).save(tmp_path / "x.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"dog": [[10, 10, 30, 40]]}))
    out = tmp_path / "out"
    args = [
        "segment",
        str(tmp_path / "x.png"),
        "--classes",
        "dog",
        "cat",
        "--model",
        str(saved_model),
        "--out",
        str(out),
    ]
    assert main([*args, "--boxes", str(tmp_path / "boxes.json")]) == 0
    summary = json.loads((out / "x.json").read_text())
    assert summary["classes"][0]["boxes"] == [[10.0, 10.0, 30.0, 40.0]]
    assert summary["classes"][1]["boxes"] == []
    (tmp_path / "bad.json").write_text(json.dumps({"bird": [[0, 0, 5, 5]]}))
    assert main([*args, "--boxes", str(tmp_path / "bad.json")]) == 2


def test_segment_with_yolo_proposals(saved_model, tmp_path) -> None:
    Image.fromarray(random_rgb(60, 80)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    status = main(
        [
            "segment",
            str(tmp_path / "x.png"),
            "--classes",
            "dog",
            "--model",
            str(saved_model),
            "--out",
            str(out),
            "--proposals",
            "yolo",
            "--yolo-model",
            "yolov8n.yaml",
            "--yolo-conf",
            "0",
            "--device",
            "cpu",
        ]
    )
    assert status == 0  # a random detector labels boxes "0".."79": none match "dog"
    assert json.loads((out / "x.json").read_text())["classes"][0]["boxes"] == []


def test_info_names_the_model_family(saved_model, tmp_path, capsys) -> None:
    from clsclip.config import DenseClipConfig

    assert main(["info", str(saved_model)]) == 0
    out = capsys.readouterr().out
    assert "ClsCLIP (trained) (clsclip)" in out and "model.safetensors" in out
    assert "weights: open_clip" in out or "weights: stored with the model" in out
    dense = tmp_path / "dense"
    dense.mkdir()
    DenseClipConfig(backbone="ViT-B-16", pretrained="openai").save(dense / "config.json")
    assert main(["info", str(dense), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "training-free" and data["weights"] == "none (config only)"
    assert data["config"]["method"] == "clearclip"
    assert data["backbone_weights"] == "open_clip ViT-B-16 / openai (open_clip's download cache)"
    checkpoint = tmp_path / "clip.bin"
    DenseClipConfig(backbone="ViT-B-16", pretrained=str(checkpoint), method="naclip").save(
        dense / "config.json"
    )
    assert main(["info", str(dense)]) == 0
    out = capsys.readouterr().out
    assert f"weights: checkpoint file {checkpoint}" in out
    assert "windows: 224 px every 112 px, refine: pamr" in out
    assert main(["info", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
        (["--max-queue", "-1"], "--max-queue must be at least 1, got -1"),
        (["--timeout", "0"], "--timeout must be a positive finite number, got 0.0"),
        (["--max-wait-ms", "-5"], "--max-wait-ms must be in [0, 10000], got -5.0"),
        (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
        (["--api-key-env", "CLSCLIP_NO_SUCH_VARIABLE"], "CLSCLIP_NO_SUCH_VARIABLE: that variable"),
        (["--max-body-mb", "inf"], "--max-body-mb must be a positive finite number, got inf"),
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--max-inflight-pixels", "0"], "--max-inflight-pixels must be at least 1, got 0"),
    ],
)
def test_serve_refuses_bad_settings_before_loading(flags, message, capsys, tmp_path) -> None:
    assert main(["serve", "--model", str(tmp_path / "no-model"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_serve_says_when_the_model_or_the_port_is_wrong(capsys, tmp_path, saved_model) -> None:
    import socket

    assert main(["serve", "--model", str(tmp_path / "no-model")]) == 2
    assert "clsclip: error:" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(saved_model), "--port", str(port), "--device",
                     "cpu"]) == 2  # fmt: skip
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_version(capsys) -> None:
    from clsclip.version import __version__

    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as done:
            main([flag])
        assert done.value.code == 0
        assert capsys.readouterr().out == f"clsclip {__version__}\n"


def test_help_shows_every_default_and_every_flag_is_explained(capsys) -> None:
    """Every option of segment, serve and train has a help text, and the numeric ones say
    their defaults."""
    from clsclip.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("segment", "serve", "train"):
        for action in commands[name]._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
    for name, flags in (("segment", ["--batch-size", "--workers", "--threshold", "--chunk-size",
                                     "--actors", "--yolo-conf"]),
                        ("serve", ["--max-batch", "--max-classes", "--max-name-chars",
                                   "--max-boxes", "--backend"])):  # fmt: skip
        for action in commands[name]._actions:
            if action.option_strings and action.option_strings[0] in flags:
                assert "default" in action.help, f"{name} {action.option_strings[0]}"


def test_help_and_version_start_without_torch() -> None:
    """`clsclip --help` and `--version` import neither torch nor the model code (they took
    seconds; now a fraction of one). Checked in a fresh interpreter, as a user runs them."""
    import subprocess
    import sys

    script = ("import sys\nfrom clsclip.cli import main\n"
              "try:\n    main([sys.argv[1]])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('torch', 'clsclip.segmenter', 'numpy') "
              "if m in sys.modules))")  # fmt: skip
    for flag in ("--help", "--version"):
        done = subprocess.run([sys.executable, "-c", script, flag], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.strip().splitlines()[-1] == "['numpy']"
            or done.stdout.strip().splitlines()[-1] == "[]"
        ), done.stdout[-300:]


def test_a_run_ends_with_a_summary_and_a_done_resume_loads_no_model(
    saved_model, tmp_path, capsys, monkeypatch
) -> None:
    for i in range(3):
        Image.fromarray(random_rgb(12, 16, seed=i)).save(tmp_path / f"im{i}.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path), "--classes", "dog", "--model", str(saved_model), "--out",
            str(out), "--format", "label"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"clsclip: 3 image(s) segmented, 1 failed, 0 done before; outputs in {out}"
    (tmp_path / "bad.png").unlink()
    assert main([*argv, "--resume"]) == 0  # the failed image is no longer an input
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"clsclip: nothing left to do: every input of the run in {out} is done"
    )
    (out / "im1_label.png").unlink()  # a deleted output: that image is redone, with the model
    assert main([*argv, "--resume"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"clsclip: 1 image(s) segmented, 0 failed, 2 done before; outputs in {out}"
    )

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("clsclip.segmenter.Segmenter.from_pretrained", no_model)
    assert main([*argv, "--resume"]) == 0
    assert "nothing left to do" in capsys.readouterr().err


def test_info_starts_without_torch(saved_model, tmp_path) -> None:
    """``clsclip info`` reads a folder's config and files only: torch is never imported (it
    took 2.2 s; now about 0.2 s). A ClsCLIP folder and a training-free one (config only)."""
    from clsclip.config import DenseClipConfig
    from tests.conftest import TINY_BACKBONE

    dense = tmp_path / "naclip"
    dense.mkdir()
    config = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None, method="naclip")
    (dense / "config.json").write_text(json.dumps(config.to_file_dict()))
    script = ("import sys\nfrom clsclip.cli import main\ncode = main(['info', sys.argv[1]])\n"
              "print('torch' in sys.modules, code)")  # fmt: skip
    for folder in (saved_model, dense):
        done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                              text=True, timeout=120,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "False 0", done.stdout[-500:]
