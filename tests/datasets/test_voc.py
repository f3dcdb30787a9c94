import random

import numpy as np
import pytest
from PIL import Image

from clsclip.datasets import IGNORE, FoldDataset, VocFolder, augment, binary_target
from clsclip.datasets.synthetic import CLASS_NAMES, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), num_train=30, num_val=12, seed=1)


def test_synthetic_layout(synth) -> None:
    folder = VocFolder.open(synth)
    assert folder.class_names("pascal5i") == list(CLASS_NAMES) and len(CLASS_NAMES) == 20
    assert len(folder.ids("train")) == 30 and len(folder.ids("val")) == 12
    mask = folder.mask("train_00000")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= set(range(21))
    index = folder.index("val")
    assert (synth / ".clsclip-index-val.json").is_file()
    assert VocFolder.open(synth).index("val") == index  # read back from the cache


def test_fold_samples_and_targets(synth) -> None:
    args = {
        "dataset": "pascal5i",
        "fold": 0,
        "input_size": 64,
        "mean": (0.5,) * 3,
        "std": (0.25,) * 3,
    }
    train = FoldDataset(synth, split="train", train=True, **args)
    test = FoldDataset(synth, split="val", train=False, **args)
    assert {label for _, label in train.samples} <= set(range(6, 21))
    assert {label for _, label in test.samples} <= set(range(1, 6))
    item = train[0]
    assert item["pixels"].shape == (3, 64, 64) and item["target"].shape == (64, 64)
    assert set(item["target"].unique().tolist()) <= {0, 1, IGNORE}
    assert item["class_name"] in CLASS_NAMES
    image, target, name = test.load(0)
    assert target.shape == (image.height, image.width)
    assert name == CLASS_NAMES[test.samples[0][1] - 1]


def test_binary_target_ignores_novel_pixels() -> None:
    mask = np.array([[0, 3, 3], [5, 255, 7]], np.uint8)
    np.testing.assert_array_equal(binary_target(mask, 3, [5]), [[0, 1, 1], [255, 255, 0]])


def test_augmentation_keeps_image_and_mask_aligned() -> None:
    # The image encodes its own mask: red exactly where the mask is 1.
    mask = np.zeros((60, 80), np.uint8)
    mask[20:45, 30:70] = 1
    image = Image.fromarray(np.stack([mask * 255, np.zeros_like(mask), np.zeros_like(mask)], -1))
    for seed in range(10):
        out_image, out_mask = augment(image, Image.fromarray(mask), random.Random(seed))
        red, labels = np.asarray(out_image)[..., 0], np.asarray(out_mask)
        assert out_image.size == out_mask.size
        inside, outside = red[labels == 1], red[labels == 0]
        assert inside.mean() > 200 and outside.mean() < 60  # blur only softens the edges
        assert set(np.unique(labels)) <= {0, 1, IGNORE}


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="data root not found"):
        VocFolder.open(tmp_path / "nope")
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(FileNotFoundError, match=r"missing \['ImageSets/Segmentation', "):
        VocFolder.open(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "SegmentationClassAug").mkdir()
    folder = VocFolder.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="no split list .*trainaug.txt"):
        folder.ids("trainaug")
    with pytest.raises(FileNotFoundError, match="no image for id 'x'"):
        folder.image_path("x")


@pytest.mark.parametrize(
    "label",
    [np.full((4, 5, 3), 3, np.uint8), np.full((4, 5), 600, np.uint16)],
    ids=["rgb", "16-bit"],
)
def test_label_images_must_be_8_bit_single_channel(tmp_path, label) -> None:
    """RGB or 16-bit labels would wrap (600 -> 88); they are refused naming the file."""
    from clsclip.datasets.voc import read_label_image

    path = tmp_path / "2007_000001.png"
    Image.fromarray(label).save(path)
    with pytest.raises(ValueError, match=r"label image .*2007_000001.png is mode .*single-channel"):
        read_label_image(path)
    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(path)
    assert (read_label_image(path) == 7).all()
