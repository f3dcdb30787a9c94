"""COCO-20i read from instance annotations through pycocotools (a tiny COCO built here)."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from clsclip.datasets import COCO_CLASSES, CocoFolder, FoldDataset, open_folder


@pytest.fixture
def coco_root(tmp_path):
    (tmp_path / "val2014").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(tmp_path / "val2014" / "a.jpg")
    Image.new("RGB", (20, 20), (90, 90, 90)).save(tmp_path / "val2014" / "b.jpg")
    crowd = np.zeros((30, 40), np.uint8, order="F")
    crowd[20:30, 0:10] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    rle["counts"] = rle["counts"].decode("ascii")
    annotations = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "height": 30, "width": 40},
            {"id": 9, "file_name": "b.jpg", "height": 20, "width": 20},
        ],
        # COCO's ids have gaps (1..90 for 80 classes); labels follow the sorted ids.
        "categories": [{"id": i + 1 + i // 10, "name": n} for i, n in enumerate(COCO_CLASSES)],
        "annotations": [
            # a car (3rd class, id 3) as a polygon: the rectangle x 10..30, y 5..15
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "iscrowd": 0,
                "area": 200.0,
                "bbox": [10, 5, 20, 10],
                "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]],
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 1,
                "area": 100.0,
                "bbox": [0, 20, 10, 10],
                "segmentation": rle,
            },
            {
                "id": 3,
                "image_id": 9,
                "category_id": 3,
                "iscrowd": 0,
                "area": 36.0,
                "bbox": [2, 2, 6, 6],
                "segmentation": [[2, 2, 8, 2, 8, 8, 2, 8]],
            },
        ],
    }
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(annotations))
    return tmp_path


def test_masks_from_instances(coco_root) -> None:
    folder = open_folder(coco_root)
    assert isinstance(folder, CocoFolder)
    assert folder.ids("val") == ["7", "9"]
    mask = folder.mask("7")
    assert mask.shape == (30, 40) and mask.dtype == np.uint8
    assert (mask[7:13, 12:28] == 3).all()  # inside the car polygon: label 3
    assert (mask[20:30, 0:10] == 1).all()  # a crowd region is its class (person)
    assert (mask[0:4, 32:40] == 0).all()
    assert folder.index("val") == {"7": {3: 200, 1: 100}, "9": {3: 36}}
    assert folder.image_path("9").name == "b.jpg"


def test_fold_dataset_over_coco(coco_root) -> None:
    # Label 3 is novel in fold 2 of the interleaved split (3, 7, 11, ...).
    data = FoldDataset(
        coco_root,
        dataset="coco20i",
        fold=2,
        split="val",
        train=False,
        input_size=32,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    assert data.samples == [("7", 3), ("9", 3)]
    image, target, name = data.load(0)
    assert name == "car" and target.shape == (30, 40) and image.size == (40, 30)
    assert set(np.unique(target)) == {0, 1}  # COCO has no ignore value, crowds included


def test_raw_and_prepared_coco_give_the_same_masks(coco_root, tmp_path) -> None:
    """One rendering for both layouts: a raw COCO root and `clsclip data coco`'s VOC layout
    give every image the same class-index mask, crowd region included."""
    from clsclip.datasets.prepare import prepare_coco

    prepared = prepare_coco(coco_root, tmp_path / "prepared", progress=False)
    raw, voc = open_folder(coco_root), open_folder(prepared)
    for image_id, stem in (("7", "COCO_val2014_000000000007"), ("9", "COCO_val2014_000000000009")):
        np.testing.assert_array_equal(raw.mask(image_id), voc.mask(stem))
    assert (voc.mask("COCO_val2014_000000000007")[20:30, 0:10] == 1).all()


def test_coco_errors(tmp_path, coco_root) -> None:
    with pytest.raises(FileNotFoundError, match="not in the VOC2012 layout"):
        open_folder(tmp_path / "val2014")
    with pytest.raises(FileNotFoundError, match="splits 'train' and 'val'"):
        CocoFolder.open(coco_root).ids("trainaug")
    with pytest.raises(FileNotFoundError, match="no annotation file"):
        CocoFolder.open(coco_root).ids("train")
