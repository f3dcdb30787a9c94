import json
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
    dense = tmp_path / "dense"
    dense.mkdir()
    DenseClipConfig(backbone="ViT-B-16", pretrained="openai").save(dense / "config.json")
    assert main(["info", str(dense), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "training-free" and data["weights"] == "none (config only)"
    assert data["config"]["method"] == "clearclip"
    assert main(["info", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
        (["--max-queue", "-1"], "--max-queue must be at least 1, got -1"),
        (["--timeout", "0"], "--timeout must be positive, got 0.0"),
        (["--max-wait-ms", "-5"], "--max-wait-ms must be in [0, 10000], got -5.0"),
        (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
        (["--api-key-env", "CLSCLIP_NO_SUCH_VARIABLE"], "CLSCLIP_NO_SUCH_VARIABLE: that variable"),
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
