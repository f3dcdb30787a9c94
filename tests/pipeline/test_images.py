import io

import numpy as np
import pytest
from PIL import Image

from clsclip.pipeline.images import load_image
from tests.conftest import random_rgb


def test_pil_numpy_and_paths_give_the_same_rgb(tmp_path) -> None:
    array = random_rgb(37, 53)
    Image.fromarray(array).save(tmp_path / "a.png")
    for source in (Image.fromarray(array), array, str(tmp_path / "a.png"), tmp_path / "a.png"):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (53, 37)
        np.testing.assert_array_equal(np.asarray(image), array)


def test_non_contiguous_array() -> None:
    array = random_rgb(20, 30)
    flipped = array[:, ::-1]
    np.testing.assert_array_equal(np.asarray(load_image(flipped)), flipped)


def test_grayscale_palette_and_cmyk_become_rgb() -> None:
    gray = Image.fromarray(np.full((4, 5), 77, np.uint8), mode="L")
    np.testing.assert_array_equal(np.asarray(load_image(gray)), np.full((4, 5, 3), 77))
    palette = Image.new("P", (5, 4))
    palette.putpalette([10, 20, 30] * 256)
    np.testing.assert_array_equal(np.asarray(load_image(palette))[0, 0], [10, 20, 30])
    cmyk = Image.new("CMYK", (5, 4), (0, 0, 0, 0))
    np.testing.assert_array_equal(np.asarray(load_image(cmyk))[0, 0], [255, 255, 255])


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black
    out = np.asarray(load_image(Image.fromarray(rgba, mode="RGBA")))
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    assert 120 <= out[1, 0, 0] <= 135


def test_16_bit_images_are_scaled_not_clipped(tmp_path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    out = np.asarray(load_image(tmp_path / "deep.png"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    np.testing.assert_array_equal(np.asarray(load_image(floats))[0, :, 1], [0, 128, 255])


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_a_dark_deep_image_stays_dark(tmp_path, dtype) -> None:
    """The scale comes from the mode (16-bit and 32-bit integers: 0..65535), never from the
    values: a dark 16-bit photo is not brightened 257 times."""
    values = np.array([[0, 257, 1000]], dtype=dtype)
    image = Image.fromarray(values)
    assert image.mode in ("I;16", "I")
    out = np.asarray(load_image(image))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 4])


def test_exif_orientation_is_applied(tmp_path) -> None:
    array = np.zeros((10, 20, 3), np.uint8)
    array[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    Image.fromarray(array).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "rot.jpg")
    assert image.size == (10, 20)  # W x H swapped
    out = np.asarray(image)
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (np.zeros((4, 4), np.uint8), ValueError, r"shape H x W x 3 \(RGB\), got \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), ValueError, "drop the alpha channel"),
        (np.zeros((4, 4, 3), np.int16), ValueError, "dtype uint8 .* or a float dtype .* got int16"),
        (np.zeros((0, 4, 3), np.uint8), ValueError, "zero size"),
        (Image.new("RGB", (0, 5)), ValueError, r"zero size \(0 x 5 pixels\)"),
        (12, TypeError, "got int"),
        (b"bytes", OSError, "cannot decode encoded image"),
        ([1, 2], TypeError, "got list"),
    ],
)
def test_bad_images(value, error, message) -> None:
    with pytest.raises(error, match=message):
        load_image(value)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(OSError, match="cannot decode image file .*junk.png"):
        load_image(tmp_path / "junk.png")
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:200])
    with pytest.raises(OSError, match="cannot decode image file .*cut.png"):
        load_image(tmp_path / "cut.png")


def test_encoded_bytes_are_images_with_the_file_checks(tmp_path) -> None:
    import io

    array = random_rgb(21, 34)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    np.testing.assert_array_equal(np.asarray(load_image(buffer.getvalue())), array)
    np.testing.assert_array_equal(np.asarray(load_image(bytearray(buffer.getvalue()))), array)
    with pytest.raises(OSError, match="cannot decode encoded image: not an image format"):
        load_image(b"not an image")
    with pytest.raises(ValueError, match="encoded image is 34 x 21 .* over the limit"):
        load_image(buffer.getvalue(), max_pixels=100)
