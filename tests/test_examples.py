"""The README's main job: the demo model script and the CLI on the bundled image."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from clsclip.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_pipeline(tmp_path) -> None:
    model_dir = tmp_path / "demo-model"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_demo_model.py"), str(model_dir)],
        check=True,
    )
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors"]
    image = ROOT / "examples" / "images" / "park.png"
    out = tmp_path / "out"
    classes = ["sky", "grass", "sun", "red car", "tree", "ball"]
    assert (
        main(
            [
                "segment",
                str(image),
                "--classes",
                *classes,
                "--model",
                str(model_dir),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    overlay = Image.open(out / "park_overlay.png")
    assert overlay.size == Image.open(image).size
    summary = json.loads((out / "park.json").read_text())
    assert [c["name"] for c in summary["classes"]] == classes
    mask = np.asarray(Image.open(out / "park_mask03_red_car.png"))
    assert mask.shape == (320, 480)
    figure = tmp_path / "plus.png"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "clsclip_plus_demo.py"),
            str(model_dir),
            str(figure),
        ],
        check=True,
    )
    assert Image.open(figure).size == (480, 320)


def test_example_image_is_reproducible(tmp_path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_example_image.py"), str(tmp_path / "p.png")],
        check=True,
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "p.png")),
        np.asarray(Image.open(ROOT / "examples" / "images" / "park.png")),
    )
