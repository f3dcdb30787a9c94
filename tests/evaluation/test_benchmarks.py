"""The training-free benchmarks: the layouts as the references' mmseg configs read them, the
names files, whole-dataset mIoU against an independent implementation (torchmetrics), and
``clsclip eval --benchmark`` end to end on synthetic datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clsclip import Segmenter
from clsclip.cli import main
from clsclip.config import DenseClipConfig
from clsclip.datasets import benchmarks
from clsclip.evaluation.benchmark import class_specs, evaluate_benchmark
from clsclip.evaluation.metrics import DatasetIoU
from tests.conftest import TINY_BACKBONE, random_rgb

CLASSES = {"voc21": 21, "voc20": 20, "context60": 60, "context59": 59, "object": 81,
           "stuff": 171, "cityscapes": 19, "ade": 150}  # fmt: skip


def test_the_names_files_are_the_references() -> None:
    for name, count in CLASSES.items():
        for method in ("clearclip", "naclip"):
            assert len(benchmarks.class_names(name, method)) == count, (name, method)
    voc = benchmarks.class_names("voc21", "naclip")
    assert len(voc[0]) == 26 and voc[0][0] == "sky"  # NACLIP's background line
    assert voc[15][:2] == ("person", "person in shirt")
    assert benchmarks.class_names("voc21", "clearclip")[0] == ("background",)
    specs, offset = class_specs("voc21", "naclip")
    assert offset == 1 and len(specs) == 20 and specs[14].prompts[0] == "person"
    assert class_specs("ade", "clearclip")[1] == 0


def test_dataset_iou_is_torchmetrics() -> None:
    """Summed over images, 255 ignored, predictions of no class counted against the label."""
    torchmetrics = pytest.importorskip("torchmetrics")
    rng = np.random.default_rng(0)
    classes = 7
    ours = DatasetIoU(classes)
    theirs = torchmetrics.classification.MulticlassJaccardIndex(
        num_classes=classes, ignore_index=255, average="none"
    )
    for _ in range(5):
        label = rng.integers(0, classes, (31, 47))
        label[rng.random(label.shape) < 0.2] = 255
        label[label == 6] = 2  # class 6 never labelled
        prediction = rng.integers(0, classes - 1, (31, 47))  # and never predicted
        ours.update(prediction, label.astype(np.uint8))
        theirs.update(torch.from_numpy(prediction), torch.from_numpy(label))
    expected = theirs.compute().numpy()
    iou = ours.class_iou()
    assert np.isnan(iou[6])  # an empty union is left out of the mean, as mmseg
    np.testing.assert_allclose(iou[:6], expected[:6], rtol=1e-6)
    assert ours.miou() == pytest.approx(float(np.mean(expected[:6])))
    none = DatasetIoU(2)
    none.update(np.array([[-1, 0]]), np.array([[1, 0]], dtype=np.uint8))  # -1: no class
    assert none.class_iou().tolist() == [1.0, 0.0] and none.accuracy() == 0.5


def _write_sample(root: Path, name: str, spec: benchmarks.Benchmark, label: np.ndarray,
                  seed: int) -> None:  # fmt: skip
    image = root / spec.images / f"{name}{spec.image_suffix}"
    target = root / spec.labels / f"{name}{spec.label_suffix}"
    image.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_rgb(*label.shape, seed)).save(image)
    png = Image.fromarray(label.astype(np.uint8))
    if spec.name.startswith("voc"):  # VOC's labels are palette PNGs
        png = png.convert("P")
        png.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    png.save(target)


def make_benchmark(root: Path, name: str, count: int = 3, seed: int = 0) -> list[np.ndarray]:
    """A synthetic dataset in the benchmark's layout; returns the labels as written, in the
    order `benchmarks.samples` lists them (by name)."""
    spec = benchmarks.BENCHMARKS[name]
    rng = np.random.default_rng(seed)
    labels, names = [], []
    for i in range(count):
        sample = f"city{i // 2}/img_{i:03d}" if name == "cityscapes" else f"img_{i:03d}"
        label = rng.integers(0, 4, (24 + 4 * i, 30))
        label[:3, :3] = 255
        _write_sample(root, sample, spec, label, i)
        labels.append(label)
        names.append(sample)
    if spec.split_file is not None:
        listing = root / spec.split_file
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(names) + "\n")
    return labels


@pytest.mark.parametrize("name", list(benchmarks.BENCHMARKS))
def test_each_layout_is_read_as_mmseg_reads_it(tmp_path, name) -> None:
    written = make_benchmark(tmp_path, name)
    found = benchmarks.samples(name, tmp_path)
    assert len(found) == 3
    spec = benchmarks.BENCHMARKS[name]
    for sample, label in zip(found, written, strict=True):
        read = benchmarks.read_label(name, sample.label)
        expected = label.copy()
        if spec.reduce_zero_label:  # 0 ignored, the others one down, 255 kept
            expected = np.where(label == 0, 255, np.where(label == 255, 255, label - 1))
        np.testing.assert_array_equal(read, expected)


def test_a_wrong_root_names_the_layout(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--data-root must be the VOCdevkit/VOC2012"):
        benchmarks.samples("voc21", tmp_path)
    make_benchmark(tmp_path, "voc21")
    (tmp_path / "JPEGImages" / "img_001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1 listed files are missing, first .*img_001"):
        benchmarks.samples("voc21", tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark 'voc'"):
        benchmarks.samples("voc", tmp_path)


def _model(tmp_path: Path) -> Path:
    config = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None, method="naclip",
                             prompt_templates=("a photo of a {}.",))  # fmt: skip
    torch.manual_seed(0)
    return Segmenter.from_config(config, device="cpu").save_pretrained(tmp_path / "model")


def test_eval_benchmark_is_the_metric_of_segment(tmp_path, capsys) -> None:
    """``clsclip eval --benchmark voc21``: the reference's settings (NACLIP's VOC21: one pass,
    prob_thd 0.1, its 26 background words, PAMR), every image segmented with the names file's
    classes, mIoU summed over the set: equal to torchmetrics on `segment`'s label maps."""
    torchmetrics = pytest.importorskip("torchmetrics")
    data = tmp_path / "VOC2012"
    labels = make_benchmark(data, "voc21")
    model = _model(tmp_path)
    out = tmp_path / "report.json"
    code = main(["eval", "--benchmark", "voc21", "--model", str(model), "--data-root", str(data),
                 "--out", str(out), "--device", "cpu"])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["images"] == 3 and report["settings"] == "reference"
    config = report["config"]
    assert (config["threshold"], config["window_size"], config["refine"]) == (0.1, 0, "pamr")
    assert len(config["background_prompts"]) == 26 and config["prompt_rule"] == "max"
    assert "mIoU" in capsys.readouterr().out
    seg = Segmenter.from_pretrained(model, device="cpu")
    from clsclip.evaluation.benchmark import benchmark_segmenter

    seg = benchmark_segmenter(seg, "voc21", "reference")
    specs, _ = class_specs("voc21", "naclip")
    metric = torchmetrics.classification.MulticlassJaccardIndex(
        num_classes=21, ignore_index=255, average="none"
    )
    for sample, label in zip(benchmarks.samples("voc21", data), labels, strict=True):
        predicted = seg.segment(str(sample.image), specs).label_map
        metric.update(torch.from_numpy(predicted.astype(np.int64)), torch.from_numpy(label))
    expected = metric.compute().numpy()
    ious = np.array([np.nan if v is None else v for v in report["class_iou"].values()])
    present = ~np.isnan(ious)
    np.testing.assert_allclose(ious[present], expected[present], rtol=1e-6)


def test_a_benchmark_without_background_shifts_the_labels(tmp_path) -> None:
    """VOC20 (reduce_zero_label, no background line): class k of the names file is label k,
    clsclip's k + 1; with prob_thd 0 every pixel gets a class."""
    data = tmp_path / "VOC2012"
    make_benchmark(data, "voc20", count=2)
    seg = Segmenter.from_pretrained(_model(tmp_path), device="cpu")
    report = evaluate_benchmark(seg, "voc20", data, progress=False)
    assert report["images"] == 2 and len(report["class_iou"]) == 20
    assert report["config"]["background_prompts"] == [] and report["config"]["window_size"] == 0
    assert 0.0 <= report["miou"] <= 1.0
