"""``clsclip segment --format label-studio``: one tasks file Label Studio imports with its
pre-annotations, and the labelling config that shows them; resumable like every format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clsclip import Segmenter
from clsclip.cli import main
from tests.conftest import import_when_run
from tests.labelling.test_run import CLASSES, _images

_libraries, lib = import_when_run(brush="label_studio_converter.brush")


label_config = pytest.importorskip("label_studio_tools.core.label_config")


def test_tasks_and_config_import_as_label_studio_reads_them(tmp_path, saved_model) -> None:
    folder = tmp_path / "in"
    paths = _images(folder / "sub", 3, bad=(1,))
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--recursive", "--classes", *CLASSES, "--model",
            str(saved_model), "--out", str(out), "--format", "label-studio", "--threshold", "0.57",
            "--ls-image-root", "https://data.example/set 1/", "--ls-from-name", "tags"]  # fmt: skip
    assert main(argv) == 1  # the bad image fails, the others are written
    tasks = json.loads((out / "label-studio.json").read_text())
    assert [t["meta"]["clsclip_key"] for t in tasks] == ["img00.png", "img02.png"]  # from sub/
    assert tasks[0]["data"]["image"] == "https://data.example/set 1/img00.png"
    reference = Segmenter.from_pretrained(saved_model)
    for task, path in zip(tasks, [paths[0], paths[2]], strict=True):
        result = reference.segment(path, CLASSES, threshold=0.57)
        (prediction,) = task["predictions"]
        assert prediction["model_version"].startswith("clsclip ")
        regions = prediction["result"]
        assert regions and all(r["from_name"] == "tags" and r["to_name"] == "image"
                               for r in regions)  # fmt: skip
        shown = {r["value"]["brushlabels"][0] for r in regions}
        assert shown == {n for n in CLASSES if result.mask(n).any()}
        for region in regions:
            height, width = region["original_height"], region["original_width"]
            decoded = lib.brush.decode_rle(region["value"]["rle"]).reshape(height, width, 4)[..., 3]
            name = region["value"]["brushlabels"][0]
            np.testing.assert_array_equal(decoded == 255, result.mask(name))
    config = label_config.parse_config((out / "label-studio.xml").read_text())
    assert config["tags"]["type"] == "BrushLabels" and config["tags"]["labels"] == CLASSES
    # grown and resumed: every task once, in key order; the new one pre-annotated too
    _images(folder / "sub", 4, bad=(1,))
    assert main([*argv, "--resume"]) == 1
    tasks = json.loads((out / "label-studio.json").read_text())
    keys = [t["meta"]["clsclip_key"] for t in tasks]
    assert keys == ["img00.png", "img02.png", "img03.png"]


def test_local_file_urls_without_a_root(tmp_path, saved_model) -> None:
    (path,) = _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    argv = ["segment", str(path), "--classes", "dog", "--model", str(saved_model), "--out",
            str(out), "--format", "label-studio", "png"]  # fmt: skip
    assert main(argv) == 0
    (task,) = json.loads((out / "label-studio.json").read_text())
    assert task["data"]["image"] == "/data/local-files/?d=" + str(path).lstrip("/")
    assert (out / "img00.json").is_file()  # other formats beside it


def test_hostile_names_nothing_found_and_no_image(tmp_path, saved_model) -> None:
    """Quotes, XML metacharacters and unicode survive into the tasks and the config; an image
    where no class is found is a task with an empty prediction; a run with no image done writes
    an empty task list and the config."""
    names = ['hot "dog"', "<b>&amp;</b>", "chien 🐕 ü", "it's"]
    (path,) = _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    argv = ["segment", str(path), "--classes", *names, "--model", str(saved_model), "--out",
            str(out), "--format", "label-studio", "--threshold", "0.57"]  # fmt: skip
    assert main(argv) == 0
    config = label_config.parse_config((out / "label-studio.xml").read_text(encoding="utf-8"))
    assert config["label"]["labels"] == names
    (task,) = json.loads((out / "label-studio.json").read_text(encoding="utf-8"))
    reference = Segmenter.from_pretrained(saved_model).segment(path, names, threshold=0.57)
    shown = {r["value"]["brushlabels"][0] for r in task["predictions"][0]["result"]}
    assert shown == {n for n in names if reference.mask(n).any()} and shown
    empty = tmp_path / "empty"
    argv = ["segment", str(path), "--classes", *names, "--model", str(saved_model), "--out",
            str(empty), "--format", "label-studio", "--threshold", "0.9999"]  # fmt: skip
    assert main(argv) == 0
    (task,) = json.loads((empty / "label-studio.json").read_text())
    assert task["predictions"] == [{"model_version": task["predictions"][0]["model_version"],
                                    "score": 0.0, "result": []}]  # fmt: skip
    (tmp_path / "bad.png").write_bytes(b"not a png")
    none = tmp_path / "none"
    argv = ["segment", str(tmp_path / "bad.png"), "--classes", *names, "--model",
            str(saved_model), "--out", str(none), "--format", "label-studio"]  # fmt: skip
    assert main(argv) == 1
    assert json.loads((none / "label-studio.json").read_text()) == []
    assert label_config.parse_config((none / "label-studio.xml").read_text())["label"]["labels"]
