"""``clsclip convert``: a run folder as COCO and VOC datasets, read by Datumaro's own importers
(what CVAT runs on upload), and exported by Datumaro to CVAT's format and read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clsclip import Segmenter
from clsclip.cli import main
from tests.conftest import random_rgb

dm = pytest.importorskip("datumaro")
from datumaro.components.annotation import AnnotationType  # noqa: E402

CLASSES = ["dog", "hot 'dog' & <bun>", "chien 🐕"]


def _run(tmp_path: Path, model: Path, *formats: str, classes=CLASSES) -> tuple[Path, dict]:
    """A run over a tree of images (keys with folders, one bad image); its inputs by key."""
    images = {}
    for i, key in enumerate(["a/img0.png", "a/img1.png", "b/img0.png"]):
        path = tmp_path / "in" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_rgb(40 + i, 50 + 2 * i, seed=i)).save(path)
        images[key] = path
    (tmp_path / "in" / "b" / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    argv = ["segment", str(tmp_path / "in"), "--recursive", "--classes", *classes, "--model",
            str(model), "--out", str(out), "--format", *formats, "--threshold", "0.57"]  # fmt: skip
    assert main(argv) == 1  # the bad image failed, the others were written
    return out, images


def _masks(item, names) -> dict[str, np.ndarray]:
    """Each label's mask in a Datumaro item (the union of its mask annotations)."""
    found: dict[str, np.ndarray] = {}
    for ann in item.annotations:
        if ann.type == AnnotationType.mask:
            name = names[ann.label]
            found[name] = found.get(name, False) | ann.image.astype(bool)
    return found


def _names(dataset) -> list[str]:
    return [c.name for c in dataset.categories()[AnnotationType.label]]


def _cvat_round_trip(dataset, folder: Path):
    dataset.export(str(folder), "cvat", save_media=True)  # its importer reads the images
    return dm.Dataset.import_from(str(folder), "cvat")


def test_coco_is_what_datumaro_imports_and_exports_to_cvat(tmp_path, saved_model) -> None:
    run, images = _run(tmp_path, saved_model, "coco")
    assert main(["convert", str(run), "--to", "coco", "--out", str(tmp_path / "coco")]) == 0
    dataset = dm.Dataset.import_from(str(tmp_path / "coco"), "coco_instances")
    assert _names(dataset) == CLASSES
    reference = Segmenter.from_pretrained(saved_model)
    results = {
        key: reference.segment(path, CLASSES, threshold=0.57) for key, path in images.items()
    }
    assert sorted(item.id for item in dataset) == ["a/img0", "a/img1", "b/img0"]
    cvat = _cvat_round_trip(dataset, tmp_path / "cvat")
    for imported in (dataset, cvat):
        names = _names(imported)
        for item in imported:
            result = results[item.id + ".png"]
            found = _masks(item, names)
            assert set(found) == {n for n in CLASSES if result.mask(n).any()}
            for name, mask in found.items():
                np.testing.assert_array_equal(mask, result.mask(name))
    for item in dataset:  # the images are in the dataset, hard links to the inputs
        linked = Path(item.media.path)
        assert linked.stat().st_ino == images[item.id + ".png"].stat().st_ino
        assert item.media.size == results[item.id + ".png"].size


def test_voc_is_what_datumaro_imports_and_exports_to_cvat(tmp_path, saved_model) -> None:
    run, images = _run(tmp_path, saved_model, "label")
    out = tmp_path / "voc"
    assert main(["convert", str(run), "--to", "voc", "--out", str(out), "--images", "copy"]) == 0
    assert (out / "SegmentationClass" / "a" / "img1.png").read_bytes() == (
        run / "a" / "img1_label.png"
    ).read_bytes()
    dataset = dm.Dataset.import_from(str(out), "voc_segmentation")
    assert _names(dataset) == ["background", *CLASSES]
    reference = Segmenter.from_pretrained(saved_model)
    cvat = _cvat_round_trip(dataset, tmp_path / "cvat")
    for imported in (dataset, cvat):
        assert sorted(item.id for item in imported) == ["a/img0", "a/img1", "b/img0"]
        names = _names(imported)
        for item in imported:
            result = reference.segment(images[item.id + ".png"], CLASSES, threshold=0.57)
            found = _masks(item, names)
            for k, name in enumerate(CLASSES):
                expected = result.label_map == k + 1
                np.testing.assert_array_equal(found.get(name, np.zeros_like(expected)), expected)
    copied = out / "JPEGImages" / "b" / "img0.png"
    assert copied.read_bytes() == images["b/img0.png"].read_bytes()
    assert copied.stat().st_ino != images["b/img0.png"].stat().st_ino


def test_without_images_and_with_no_image_done(tmp_path, saved_model) -> None:
    run, _ = _run(tmp_path, saved_model, "coco", "label")
    for layout, fmt in (("coco", "coco_instances"), ("voc", "voc_segmentation")):
        out = tmp_path / f"{layout}-bare"
        assert main(["convert", str(run), "--to", layout, "--out", str(out), "--images",
                     "none"]) == 0  # fmt: skip
        assert len(dm.Dataset.import_from(str(out), fmt)) == 3  # annotations for a CVAT task
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad.png").write_bytes(b"nothing")
    argv = ["segment", str(tmp_path / "empty"), "--classes", "dog", "--model", str(saved_model),
            "--out", str(tmp_path / "run0"), "--format", "coco", "label"]  # fmt: skip
    assert main(argv) == 1
    for layout, fmt in (("coco", "coco_instances"), ("voc", "voc_segmentation")):
        out = tmp_path / f"{layout}-0"
        assert main(["convert", str(tmp_path / "run0"), "--to", layout, "--out", str(out)]) == 0
        assert len(dm.Dataset.import_from(str(out), fmt)) == 0


def test_refusals_are_one_line_and_write_nothing(tmp_path, saved_model, capsys) -> None:
    run, _ = _run(tmp_path, saved_model, "label", classes=["dog", "a:b"])
    capsys.readouterr()
    cases = [
        (["convert", str(tmp_path / "in"), "--to", "coco", "--out", str(tmp_path / "x")],
         "is not a clsclip run folder"),
        (["convert", str(run), "--to", "coco", "--out", str(tmp_path / "x")],
         "needs a run with --format coco"),
        (["convert", str(run), "--to", "voc", "--out", str(tmp_path / "x")],
         "class 'a:b' cannot be written in VOC's text files"),
        (["convert", str(run), "--to", "voc", "--out", str(run / "inside")],
         "outside the run folder"),
        (["convert", str(run), "--to", "voc", "--out", str(tmp_path / "in")],
         "is not an empty folder"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists() and not (run / "inside").exists()
    assert not [p for p in tmp_path.iterdir() if "clsclip-tmp" in p.name]


def test_labelmap_holds_the_run_colours(tmp_path, saved_model) -> None:
    run, _ = _run(tmp_path, saved_model, "label")
    out = tmp_path / "voc"
    assert main(["convert", str(run), "--to", "voc", "--out", str(out)]) == 0
    classes = json.loads((run / "classes.json").read_text())
    lines = (out / "labelmap.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert lines == [f"{c['name']}:{','.join(map(str, c['color']))}::" for c in classes]
    ids = (out / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    assert ids == ["a/img0", "a/img1", "b/img0"]
    assert os.path.samefile(out / "JPEGImages" / "a" / "img0.png", tmp_path / "in/a/img0.png")


def test_a_live_or_unmerged_run_is_refused(tmp_path, saved_model, capsys) -> None:
    run, _ = _run(tmp_path, saved_model, "coco")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from clsclip.labelling.manifest import lock_folder; "
         "held = lock_folder(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)",
         str(run)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        capsys.readouterr()
        assert main(["convert", str(run), "--to", "coco", "--out", str(tmp_path / "x")]) == 2
        assert "another clsclip run is writing into" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    lines = (run / "manifest.jsonl").read_text().splitlines(keepends=True)
    with open(run / "manifest.jsonl", "a") as f:  # a start that wrote a record, then was
        f.write(lines[-1])  # killed before its merge
    assert main(["convert", str(run), "--to", "coco", "--out", str(tmp_path / "x")]) == 2
    assert "finish it with --resume first" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
