"""`Segmenter.calibrate` and ``clsclip calibrate``: label folders and COCO files in, a
calibrated model folder out that reloads and gives the calibrated probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clsclip import Segmenter
from clsclip.cli import main
from clsclip.datasets.synthetic import CLASS_NAMES, generate
from tests.conftest import random_rgb, tiny_segmenter

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-model"
CLASSES = list(CLASS_NAMES)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    """Six images of the synthetic shapes world (the demo model's) and their label PNGs."""
    root = generate(tmp_path_factory.mktemp("shapes"), num_train=0, num_val=6, seed=11)
    return root / "JPEGImages", root / "SegmentationClassAug"


def _samples(images: Path, labels: Path) -> list[tuple[str, np.ndarray]]:
    return [(str(p), np.asarray(Image.open(labels / p.name))) for p in sorted(images.iterdir())]


def _shown(labels: Path) -> list[str]:
    values = set().union(*(np.unique(np.asarray(Image.open(p))) for p in labels.iterdir()))
    return [name for k, name in enumerate(CLASSES) if k + 1 in values]


def test_calibrate_writes_a_folder_that_reloads_calibrated(tmp_path, shapes, capsys) -> None:
    images, labels = shapes
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(DEMO), "--images", str(images)]
    assert main([*argv, "--labels", str(labels), "--classes", *CLASSES, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    shown = _shown(labels)
    assert 2 <= len(shown) < len(CLASSES)
    assert "calibrated on 6 image(s)" in captured.out and shown[0] in captured.out
    config = json.loads((out / "config.json").read_text())
    calibration = config["calibration"]
    assert set(calibration["classes"]) == set(shown) == set(config["class_thresholds"])
    absent = [n for n in CLASSES if n not in shown]
    assert calibration["set"] == {
        "images": 6,
        "metric": "iou",
        "absent": absent,
        "uncalibrated": {},
    }
    assert f"never in the set (default calibration and threshold): {absent[0]}" in captured.err
    assert set(calibration["figures"]) == {"all", *shown}
    pooled = calibration["figures"]["all"]
    assert pooled["ece_after"] < pooled["ece_before"]
    assert pooled["iou_calibrated"] >= pooled["iou_at_0.5"]
    # the same fit from Python
    raw = Segmenter.from_pretrained(DEMO)
    python = raw.calibrate(_samples(images, labels), CLASSES)
    assert python.config.calibration == calibration
    assert raw.config.calibration is None  # the original is unchanged
    # reloaded: probabilities are sigmoid(scale * raw logit + bias), masks at the thresholds
    back = Segmenter.from_pretrained(out)
    image = Image.open(sorted(images.iterdir())[0])
    names = [shown[0], absent[0]]
    before, after = raw.segment(image, names), back.segment(image, names)
    for k, name in enumerate(names):
        entry = calibration["classes"].get(name, calibration["default"])
        logit = before._full().class_logits(k)
        expected = torch.sigmoid(entry["scale"] * logit + entry["bias"]).numpy()
        np.testing.assert_allclose(after.prob(name), expected, rtol=0, atol=2e-6)
    assert after.thresholds == {shown[0]: config["class_thresholds"][shown[0]],
                                absent[0]: config["threshold"]}  # fmt: skip


def test_f1_is_a_mean_over_images(tmp_path, shapes) -> None:
    images, labels = shapes
    raw = Segmenter.from_pretrained(DEMO)
    f1 = raw.calibrate(_samples(images, labels), CLASSES, metric="f1").config.calibration
    iou = raw.calibrate(_samples(images, labels), CLASSES).config.calibration
    assert f1 is not None and iou is not None and f1["set"]["metric"] == "f1"
    assert f1["classes"] == iou["classes"]  # the same temperatures; thresholds may differ
    assert "f1_calibrated" in f1["figures"]["all"]


def _coco_file(images: Path, labels: Path, path: Path) -> None:
    """COCO instances of the label PNGs: one RLE annotation per class and image."""
    from pycocotools import mask as mask_utils

    entries, annotations = [], []
    for i, file in enumerate(sorted(images.iterdir())):
        label = np.asarray(Image.open(labels / file.name))
        entries.append({"id": i + 1, "file_name": file.name, "width": label.shape[1],
                        "height": label.shape[0]})  # fmt: skip
        for value in np.unique(label[(label > 0) & (label < 255)]):
            rle = mask_utils.encode(np.asfortranarray((label == value).astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(value) * 10,
                "iscrowd": 0, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            })  # fmt: skip
    categories = [{"id": (k + 1) * 10, "name": name} for k, name in enumerate(CLASSES)]
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": categories}))  # fmt: skip


def test_calibrate_from_a_coco_file_equals_the_label_folder(tmp_path, shapes) -> None:
    images, labels = shapes
    coco = tmp_path / "instances.json"
    _coco_file(images, labels, coco)
    argv = ["calibrate", "--model", str(DEMO), "--images", str(images)]
    from_labels, from_coco = tmp_path / "labels", tmp_path / "coco"
    assert main([*argv, "--labels", str(labels), "--classes", *CLASSES,
                 "--out", str(from_labels)]) == 0  # fmt: skip
    assert main([*argv, "--coco", str(coco), "--out", str(from_coco)]) == 0  # all categories
    a, b = (json.loads((p / "config.json").read_text()) for p in (from_labels, from_coco))
    assert a["calibration"] == b["calibration"] and a["class_thresholds"] == b["class_thresholds"]
    shown = _shown(labels)
    only = tmp_path / "only"
    assert main([*argv, "--coco", str(coco), "--classes", shown[0], "--out", str(only)]) == 0
    figures = json.loads((only / "config.json").read_text())["calibration"]["figures"]
    assert figures[shown[0]]["pixels"] == figures["all"]["pixels"]  # the others ignored


def test_bad_calibration_inputs_are_one_line_errors(tmp_path, shapes, capsys) -> None:
    images, labels = shapes
    base = ["calibrate", "--model", str(DEMO), "--images", str(images),
            "--out", str(tmp_path / "out")]  # fmt: skip

    def error(*extra: str) -> str:
        assert main([*base, *extra]) == 2
        message = capsys.readouterr().err.strip()
        assert message.count("\n") == 0
        return message

    partial = tmp_path / "partial"
    partial.mkdir()
    for p in sorted(labels.iterdir())[1:]:
        (partial / p.name).write_bytes(p.read_bytes())
    first = sorted(images.iterdir())[0].name
    message = error("--labels", str(partial), "--classes", *CLASSES)
    assert f"1 image(s) have no label PNG of the same stem in {partial}: {first}" in message
    message = error("--labels", str(labels), "--classes", "red disc")  # labels beyond 1
    assert "are beyond the 1 classes" in message and first in message
    small = tmp_path / "small"
    small.mkdir()
    for p in labels.iterdir():
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(small / p.name)
    assert "the label map is 10 x 10, the image 128 x 96" in error(
        "--labels", str(small), "--classes", *CLASSES
    )
    coco = tmp_path / "instances.json"
    _coco_file(images, labels, coco)
    assert "['cat'] are not categories of" in error("--coco", str(coco), "--classes", "cat")
    assert "give the classes with --classes" in error(
        "--labels", str(labels), "--classes", "a", "--classes-file", str(coco)
    )
    assert "give the classes with --classes" in error("--labels", str(labels))
    with pytest.raises(ValueError, match="unknown metric 'dice'"):
        tiny_segmenter().calibrate([], CLASSES, metric="dice")
    with pytest.raises(ValueError, match="the calibration set is empty"):
        tiny_segmenter().calibrate([], CLASSES)
    with pytest.raises(TypeError, match=r"sample 0: give \(image, label_map\) pairs"):
        tiny_segmenter().calibrate([random_rgb(8, 8)], CLASSES)


def test_a_class_on_every_labelled_pixel_is_not_emptied() -> None:
    """The rest of the labels is 255: the class is on every labelled pixel. Calibrated, it
    keeps its pixels (before: a scale of 1e-7 and a threshold of 0.9999999999999942, an empty
    mask where `prob()` read 1.0), and its masks agree with its probabilities."""
    seg = tiny_segmenter()
    images = [random_rgb(40, 40, seed=i) for i in range(2)]
    samples = []
    for image in images:
        labels = np.full((40, 40), 255, np.uint8)
        labels[:, :25] = 1
        samples.append((image, labels))
    calibrated = seg.calibrate(samples, ["dog", "cat"])
    report = calibrated.config.calibration
    assert report is not None and report["set"]["absent"] == ["cat"]
    assert "every labelled pixel" in report["set"]["uncalibrated"]["dog"]
    for image in images:
        result = calibrated.segment(image, ["dog", "cat"])
        assert result.mask("dog")[:, :25].mean() > 0.99
        assert np.array_equal(result.mask("dog"), result.prob("dog") > result.thresholds["dog"])


def test_a_calibrated_segmenter_shares_the_network_and_its_place() -> None:
    seg = tiny_segmenter()
    labels = np.zeros((30, 30), np.uint8)
    labels[:10] = 1
    calibrated = seg.calibrate([(random_rgb(30, 30), labels)], ["dog"])
    assert calibrated.model is seg.model and calibrated.device == seg.device
    assert calibrated.backend._placement is seg.backend._placement  # one place for both
    assert seg.config.calibration is None  # the original's config is its own
