import pytest

from clsclip.proposals.zoom import ZoomSettings, crop_region


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
