"""A run's identity: one function (`clsclip.labelling.manifest.compared`) says whether two
starts are the same run, comparing the model by content, and run.json stores what was
resolved, never a setting that resolves differently on another machine."""

from __future__ import annotations

import json
import os
import shutil

import torch

from clsclip.backends.precision import resolve_precision
from clsclip.cli import main
from tests.labelling.test_run import _images, _manifest

CLASSES = ["dog", "cat"]


def test_resume_with_the_model_spelled_otherwise_is_the_same_run(
    tmp_path, saved_model, monkeypatch
) -> None:
    _images(tmp_path / "in", 2)
    local = tmp_path / "model"
    shutil.copytree(saved_model, local)
    (tmp_path / "alias").symlink_to(local)
    monkeypatch.chdir(tmp_path)
    argv = ["segment", "in", "--classes", *CLASSES, "--out", "out", "--format", "label"]
    assert main([*argv, "--model", "model"]) == 0
    first = _manifest(tmp_path / "out")
    for spelling in (str(local), "./model/", "alias"):
        assert main([*argv, "--model", spelling, "--resume"]) == 0
    assert _manifest(tmp_path / "out") == first  # nothing redone


def test_resume_with_other_weights_at_the_same_path_is_refused(
    tmp_path, saved_model, capsys
) -> None:
    from tests.conftest import tiny_segmenter

    _images(tmp_path / "in", 1)
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    argv = ["segment", str(tmp_path / "in"), "--classes", *CLASSES, "--out", str(tmp_path / "o")]
    argv += ["--model", str(model)]
    assert main(argv) == 0
    shutil.rmtree(model)
    tiny_segmenter(seed=9).save_pretrained(model)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    assert "model: " in capsys.readouterr().err


def test_run_json_stores_the_resolved_precision(tmp_path, saved_model) -> None:
    _images(tmp_path / "in", 1)
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path / "in"), "--classes", *CLASSES, "--model", str(saved_model)]
    assert main([*argv, "--out", str(out), "--precision", "auto", "--device", "cpu"]) == 0
    stored = json.loads((out / "run.json").read_text())["precision"]
    assert stored == resolve_precision("auto", torch.device("cpu"))[0] != "auto"
    assert os.path.isfile(out / "manifest.jsonl")
