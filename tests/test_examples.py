"""The README's main job and the example scripts, with the bundled demo model."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from clsclip import Segmenter
from clsclip.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IMAGE = EXAMPLES / "images" / "shapes.png"


def test_demo_model_is_small_and_segments_the_example(tmp_path) -> None:
    weights = EXAMPLES / "demo-model" / "model.safetensors"
    assert weights.stat().st_size < 10 * 2**20
    out = tmp_path / "out"
    classes = ["red disc", "blue triangle", "yellow ring", "green cross", "blue square"]
    assert (
        main(
            [
                "segment",
                str(IMAGE),
                "--classes",
                *classes,
                "--model",
                str(EXAMPLES / "demo-model"),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert Image.open(out / "shapes_overlay.png").size == (480, 320)
    summary = json.loads((out / "shapes.json").read_text())
    assert [c["name"] for c in summary["classes"]] == classes
    # Real masks: each large object is found where the example image drew it.
    result = Segmenter.from_pretrained(EXAMPLES / "demo-model", device="cpu").segment(
        IMAGE, classes
    )
    for name, (cx, cy) in {
        "red disc": (70, 80),
        "blue triangle": (230, 100),
        "green cross": (140, 230),
        "blue square": (300, 240),
    }.items():
        assert result.mask(name)[cy, cx], name
    assert result.mask("red disc")[:, 200:].sum() < 0.1 * result.mask("red disc").sum()


def test_zoom_in_finds_the_small_objects() -> None:
    seg = Segmenter.from_pretrained(EXAMPLES / "demo-model", device="cpu")
    boxes = json.loads((EXAMPLES / "boxes.json").read_text())
    plain = seg.segment(IMAGE, ["red disc", "yellow ring"])
    zoomed = seg.segment(IMAGE, ["red disc", "yellow ring"], proposals=boxes)
    assert not plain.mask("red disc")[240:260, 410:430].any()  # too small at full-image scale
    assert zoomed.mask("red disc")[245:255, 415:425].mean() > 0.8


def _run_script(monkeypatch, script: str, *args: object) -> None:
    """``python examples/SCRIPT ARGS``, run in this process as ``__main__`` (`runpy`): the same
    code as a user's run, without a second interpreter importing torch (seconds each)."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), *map(str, args)])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")


def test_example_scripts(tmp_path, monkeypatch) -> None:
    _run_script(monkeypatch, "make_example_image.py", tmp_path / "s.png")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "s.png")), np.asarray(Image.open(IMAGE))
    )
    figure = tmp_path / "plus.png"
    _run_script(monkeypatch, "clsclip_plus_demo.py", EXAMPLES / "demo-model", figure)
    assert Image.open(figure).size == (968, 320)


def test_the_training_free_figure_script(tmp_path, monkeypatch) -> None:
    """examples/training_free_methods.py: one panel per method (ClearCLIP, NACLIP, NACLIP +
    PAMR, SC-CLIP), each the overlay of that method's result, side by side."""
    from tests.conftest import TINY_BACKBONE

    out = tmp_path / "methods.png"
    _run_script(monkeypatch, "training_free_methods.py", IMAGE, "red disc", "blue triangle",
                "--out", out, "--backbone", json.dumps(TINY_BACKBONE), "--pretrained", "none",
                "--width", "120")  # fmt: skip
    width, height = Image.open(out).size
    assert width == 4 * 120 + 3 * 6 and height == round(120 * 320 / 480) + 24


def test_the_main_job_runs_twice(tmp_path, monkeypatch) -> None:
    """examples/demo.sh's two commands, as it writes them, twice in a row (before: the second
    run was refused, 'holds a run already')."""
    import shlex

    script = (EXAMPLES / "demo.sh").read_text()
    commands = []
    for block in script.split(".venv/bin/clsclip ")[1:]:
        text = block.split("\n.venv/bin/")[0].split("\necho")[0].replace("\\\n", " ")
        commands.append(shlex.split(text))
    assert len(commands) == 2 and all("--overwrite" in c for c in commands)
    monkeypatch.chdir(EXAMPLES.parent)
    for command in commands:
        command = [tmp_path / a.split("/", 1)[1] if a.startswith("outputs/") else a
                   for a in command]  # fmt: skip
        for _ in range(2):
            assert main([str(a) for a in command]) == 0
