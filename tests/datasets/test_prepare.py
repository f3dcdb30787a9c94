"""`clsclip data`: SBD .mat and COCO annotations into the VOC layout, and the list check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clsclip.cli import main
from clsclip.datasets import VocFolder
from clsclip.datasets.prepare import check, read_sbd_mask


def test_voc_and_sbd_become_segmentation_class_aug(tmp_path, capsys) -> None:
    from scipy.io import savemat

    voc, sbd = tmp_path / "VOC2012", tmp_path / "sbd"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    (sbd / "cls").mkdir(parents=True)
    ids = ["2008_000001", "2008_000002", "2008_000003", "2008_000004"]
    for i in ids:
        Image.new("RGB", (6, 5)).save(voc / "JPEGImages" / f"{i}.jpg")
    own = np.full((5, 6), 7, np.uint8)
    own[0] = 255
    Image.fromarray(own).save(voc / "SegmentationClass" / "2008_000001.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("2008_000001\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("2008_000002\n")
    for k, i in enumerate(ids[1:]):
        mask = np.full((5, 6), k + 1, np.uint8)
        savemat(sbd / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": mask, "Boundaries": []}})
    (sbd / "train.txt").write_text("2008_000003\n2008_000002\n")
    (sbd / "val.txt").write_text("2008_000004\n")
    assert read_sbd_mask(sbd / "cls" / "2008_000004.mat").tolist() == [[3] * 6] * 5
    assert main(["data", "voc", "--voc", str(voc), "--sbd", str(sbd)]) == 0
    folder = VocFolder.open(voc)
    assert folder.mask_dir.name == "SegmentationClassAug"
    np.testing.assert_array_equal(folder.mask("2008_000001"), own)  # VOC's own mask wins
    assert (folder.mask("2008_000004") == 3).all()
    # trainaug: VOC train + SBD train and val, less VOC val (2008_000002)
    assert folder.ids("trainaug") == ["2008_000001", "2008_000003", "2008_000004"]
    assert main(["data", "check", "--dataset", "pascal5i", "--data-root", str(voc)]) == 1
    assert "missing images" in capsys.readouterr().out


def test_coco_becomes_class_index_pngs(tmp_path) -> None:
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "val2014").mkdir()
    Image.new("RGB", (10, 8)).save(coco / "val2014" / "COCO_val2014_000000000042.jpg")
    categories = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3, 18, 90)]  # sparse ids
    annotations = [
        {"id": 1, "image_id": 42, "category_id": 18, "iscrowd": 0, "area": 12,
         "segmentation": [[0, 0, 4, 0, 4, 3, 0, 3]], "bbox": [0, 0, 4, 3]},
        {"id": 2, "image_id": 42, "category_id": 90, "iscrowd": 0, "area": 9,
         "segmentation": [[6, 4, 9, 4, 9, 7, 6, 7]], "bbox": [6, 4, 3, 3]},
    ]  # fmt: skip
    images = [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "height": 8, "width": 10}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (coco / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    out = tmp_path / "coco20i"
    assert main(["data", "coco", "--coco", str(coco), "--out", str(out)]) == 0
    folder = VocFolder.open(out)
    assert folder.ids("val") == ["COCO_val2014_000000000042"]
    mask = folder.mask("COCO_val2014_000000000042")
    assert mask.shape == (8, 10)
    assert set(np.unique(mask)) == {0, 4, 5}  # category ids 18 and 90: the 4th and 5th
    assert folder.image_path("COCO_val2014_000000000042").is_file()
    report = check("coco20i", out)
    assert not report.ok and report.images > 100_000  # the standard lists' images
    assert "COCO_val2014_000000000042" not in report.missing_masks


def test_sbd_file_errors(tmp_path) -> None:
    from scipy.io import savemat

    savemat(tmp_path / "x.mat", {"other": np.zeros(2)})
    with pytest.raises(ValueError, match="not an SBD class file"):
        read_sbd_mask(tmp_path / "x.mat")
