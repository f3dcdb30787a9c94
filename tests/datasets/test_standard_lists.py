"""Training sets as in the references: the standard lists, novel pixels as background."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from clsclip.datasets import FoldDataset, VocFolder
from clsclip.datasets.standard import standard_pairs, standard_training_pairs
from clsclip.training import TrainConfig

SPLITS = resources.files("clsclip.datasets").joinpath("splits")


def _root_with_index(tmp_path, pairs, split="trainaug"):
    """A VOC-layout root whose cached index holds the listed pairs (no pixels needed to list)."""
    root = tmp_path / "voc"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    index: dict[str, dict[str, int]] = {}
    for image_id, label in pairs:
        index.setdefault(image_id, {})[str(label)] = 500
    index[pairs[0][0]]["3"] = 40  # a novel class of fold 0 in one training image
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(index) + "\n")
    for image_id in index:  # empty stand-ins: the cache key reads sizes and times, not pixels
        (root / "SegmentationClassAug" / f"{image_id}.png").touch()
    key = VocFolder.open(root)._index_key(split, list(index))
    (root / f".clsclip-index-{split}.json").write_text(json.dumps({"key": key, "index": index}))
    return root


def test_standard_training_pairs_are_the_other_folds_lists() -> None:
    expected = []
    for fold in (1, 2, 3):
        text = SPLITS.joinpath("pascal5i", "trn", f"fold{fold}.txt").read_text()
        expected += [(line[:-4], int(line[-2:])) for line in text.splitlines()]
    assert standard_training_pairs("pascal5i", 0) == expected
    assert len(expected) == 3425 + 5883 + 2086
    coco = standard_training_pairs("coco20i", 0)
    assert coco == standard_pairs("coco20i", 0, "trn")
    assert {label for _, label in coco}.isdisjoint(range(1, 81, 4))  # no fold-0 novel class
    assert coco[0][0].startswith("COCO_train2014_")


def test_training_on_the_standard_lists_reads_exactly_those_pairs(tmp_path) -> None:
    pairs = standard_training_pairs("pascal5i", 0)
    root = _root_with_index(tmp_path, pairs)
    common = {
        "dataset": "pascal5i",
        "fold": 0,
        "split": "trainaug",
        "train": True,
        "input_size": 64,
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    data = FoldDataset(root, pairs=pairs, novel_pixels="background", **common)
    assert data.samples == pairs
    dropped = FoldDataset(root, pairs=pairs, novel_pixels="drop-image", **common)
    assert dropped.samples == [p for p in pairs if p[0] != pairs[0][0]]
    with pytest.raises(ValueError, match="unknown novel_pixels"):
        FoldDataset(root, pairs=pairs, novel_pixels="keep", **common)
    with pytest.raises(FileNotFoundError, match="run clsclip data check"):
        FoldDataset(root, pairs=[("2099_000001", 6)], **common)


@pytest.mark.parametrize(("mode", "novel_value"), [("background", 0), ("ignore", 255)])
def test_novel_pixels_in_training_targets(tmp_path, mode, novel_value) -> None:
    root = tmp_path / "voc"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 6  # a base class of fold 0
    mask[4:, :4] = 2  # a novel class of fold 0
    Image.fromarray(mask).save(root / "SegmentationClassAug" / "a.png")
    Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "a.png")
    (root / "ImageSets" / "Segmentation" / "trainaug.txt").write_text("a\n")
    data = FoldDataset(
        root, dataset="pascal5i", fold=0, split="trainaug", train=True, input_size=8,
        mean=(0.5,) * 3, std=(0.5,) * 3, novel_pixels=mode, min_pixels=1,
    )  # fmt: skip
    _, target, name = data.load(0)
    assert name == "bus" and (target[:4] == 1).all()
    assert (target[4:, :4] == novel_value).all() and (target[4:, 4:] == 0).all()


def test_bundled_configs_reproduce_the_references() -> None:
    for fold in range(4):
        pascal = TrainConfig.load(f"pascal5i-fold{fold}")
        coco = TrainConfig.load(f"coco20i-fold{fold}")
        for config, size in ((pascal, 480), (coco, 352)):
            assert config.train_lists == "standard" and config.novel_pixels == "background"
            assert config.model["image_size"] == size
            assert config.model["resize_mode"] == "resize"
