import numpy as np
import pytest
import torch
from PIL import Image

from clsclip.geometry import Letterbox
from clsclip.pipeline.letterbox import letterbox_image
from tests.reference_postprocess import restore_all as restore_logits

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.mark.parametrize(
    ("size", "resized"),
    [((37, 53), (45, 64)), ((641, 479), (64, 48)), ((64, 64), (64, 64)), ((1, 500), (1, 64))],
)
def test_letterbox_keeps_aspect_ratio(size, resized) -> None:
    box = Letterbox.fit(size, 64)
    assert box.resized_size == resized and box.original_size == size


def test_letterbox_places_image_top_left_and_pads_with_mean() -> None:
    image = Image.new("RGB", (53, 37), (255, 128, 0))
    pixels, box = letterbox_image(image, 64, MEAN, STD)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    expected = (torch.tensor([255, 128, 0]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(pixels[:, 10, 10], expected)
    assert box.resized_size == (45, 64)
    assert torch.all(pixels[:, 45:, :] == 0)


@pytest.mark.parametrize("size", [(37, 53), (641, 479), (100, 100)])
def test_restore_maps_back_to_the_right_pixels(size) -> None:
    """A box drawn in the image, letterboxed and restored, lands where it was (within 1 px)."""
    height, width = size
    y0, y1, x0, x1 = height // 4, height // 2, width // 3, (3 * width) // 4
    array = np.zeros((height, width, 3), np.uint8)
    array[y0:y1, x0:x1] = 255
    pixels, box = letterbox_image(Image.fromarray(array), 64, (0, 0, 0), (1, 1, 1))
    restored = restore_logits(pixels[:1], box)[0].numpy()
    assert restored.shape == size
    mask = restored > 0.5
    rows, cols = np.nonzero(mask)
    scale = max(height, width) / 64  # one input pixel in original pixels
    tolerance = max(1.0, scale)
    assert abs(rows.min() - y0) <= tolerance and abs(rows.max() + 1 - y1) <= tolerance
    assert abs(cols.min() - x0) <= tolerance and abs(cols.max() + 1 - x1) <= tolerance


def test_restore_from_the_patch_grid() -> None:
    box = Letterbox.fit((37, 53), 64)
    logits = torch.zeros(2, 8, 8)
    logits[1] = 3.0
    out = restore_logits(logits, box)
    assert out.shape == (2, 37, 53)
    torch.testing.assert_close(out[1], torch.full((37, 53), 3.0))
    torch.testing.assert_close(out[0], torch.zeros(37, 53))
