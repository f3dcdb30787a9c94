import numpy as np
import pytest

from clsclip.zoom import CropPrediction, ZoomSettings, crop_region, fuse


@pytest.mark.parametrize(
    ("box", "region"),
    [
        # 20 % of the height per side (30 -> 42 px); the width 20 -> 28 px, then held to 32
        ((40, 50, 60, 80), (34, 44, 66, 86)),
        ((0, 0, 20, 10), (0, 0, 32, 32)),  # top-left corner: held to 32 px, shifted inside
        ((-30, 90, 10, 130), (0, 68, 32, 100)),  # partly outside: clipped, grown, shifted inside
        ((195, 95, 250, 150), (168, 68, 200, 100)),  # bottom-right, partly outside
        ((100, 50, 102, 52), (85, 35, 117, 67)),  # a 2 px box grows to 32 px around its centre
        ((100.4, 50.6, 131.2, 90.1), (94, 42, 138, 98)),  # 94.24, 42.7, 137.36, 98.0 outwards
    ],
)
def test_crop_region(box, region) -> None:
    assert crop_region(box, (100, 200), ZoomSettings(margin=0.2, min_size=32)) == region


def test_crop_region_outside_and_small_images() -> None:
    settings = ZoomSettings(margin=0.2, min_size=32)
    assert crop_region((200, 10, 260, 40), (100, 200), settings) is None
    assert crop_region((-20, -20, 0, 0), (100, 200), settings) is None
    # An image smaller than min_size: the crop is the whole image.
    assert crop_region((2, 2, 4, 4), (10, 20), settings) == (0, 0, 20, 10)


def test_zoom_settings_validation() -> None:
    with pytest.raises(ValueError, match=r"unknown fusion 'or'; choose one of \['max', 'crops'\]"):
        ZoomSettings(fusion="or")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margin"):
        ZoomSettings(margin=-0.1)
    with pytest.raises(ValueError, match="min_size must be >= 1"):
        ZoomSettings(min_size=0)


def test_fuse_max_is_union_and_leaves_the_outside_alone() -> None:
    full = np.full((2, 6, 8), 0.3, np.float32)
    crop = CropPrediction(1, (2, 1, 5, 4), np.array([[0.9, 0.1, 0.5]] * 3, np.float32))
    out = fuse(full, [crop], "max")
    np.testing.assert_array_equal(out[0], full[0])
    np.testing.assert_array_equal(out[1, 1:4, 2:5], np.float32([[0.9, 0.3, 0.5]] * 3))
    outside = np.ones((6, 8), bool)
    outside[1:4, 2:5] = False
    np.testing.assert_array_equal(out[1][outside], full[1][outside])
    assert full[1, 1, 2] == np.float32(0.3)  # the input is not modified


def test_fuse_crops_replaces_inside_and_takes_max_of_overlaps() -> None:
    full = np.full((1, 4, 4), 0.8, np.float32)
    a = CropPrediction(0, (0, 0, 3, 3), np.full((3, 3), 0.2, np.float32))
    b = CropPrediction(0, (2, 2, 4, 4), np.full((2, 2), 0.4, np.float32))
    out = fuse(full, [a, b], "crops")[0]
    assert out[0, 0] == np.float32(0.2) and out[2, 2] == np.float32(0.4)
    assert out[3, 3] == np.float32(0.4) and out[0, 3] == np.float32(0.8)
