"""The way in: an image resized (and padded) into the square model input, as pixels.

The geometry is `clsclip.geometry.Letterbox`; the way back is `clsclip.results.restore`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clsclip.geometry import MAX_LONG_SIDE, Letterbox


def letterbox_image(
    image: Image.Image,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    mode: str = "letterbox",
    max_long_side: int = MAX_LONG_SIDE,
) -> tuple[torch.Tensor, Letterbox]:
    """Resize (bicubic, long side to ``input_size``), normalise and zero-pad an RGB image; with
    ``mode="resize"``, stretch it to the square instead (no padding); with
    ``mode="short-side"``, see `short_side_pixels`.

    Returns:
        A float32 tensor ``3 x input_size x input_size`` (padding is 0, i.e. the mean colour after
        normalisation) and the `Letterbox` that maps predictions back.
    """
    box = Letterbox.for_mode((image.height, image.width), input_size, mode, max_long_side)
    if not box.padded:
        array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        return short_side_pixels(array[None], box, mean, std)[0], box
    h, w = box.resized_size
    resized = (
        image if (h, w) == box.original_size else image.resize((w, h), Image.Resampling.BICUBIC)
    )
    scaled = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    array = (scaled - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    pixels = torch.zeros(3, input_size, input_size, dtype=torch.float32)
    pixels[:, :h, :w] = torch.from_numpy(array).permute(2, 0, 1)
    return pixels, box


def letterbox_tensor(
    images: torch.Tensor,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    mode: str = "letterbox",
    max_long_side: int = MAX_LONG_SIDE,
) -> tuple[torch.Tensor, Letterbox]:
    """`letterbox_image` for a batch of same-size image tensors, on their device.

    Args:
        images: ``B x 3 x H x W`` RGB, uint8 (0..255) or floating point (0..1, clipped).

    Returns:
        float32 ``B x 3 x input_size x input_size`` and the shared `Letterbox`. The resize is
        torch's antialiased bicubic, close to PIL's (within a few 1/255 levels) but not equal.
    """
    box = Letterbox.for_mode((images.shape[-2], images.shape[-1]), input_size, mode, max_long_side)
    if not box.padded:
        if images.dtype != torch.uint8:
            images = (images.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        return short_side_pixels(images, box, mean, std), box
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    h, w = box.resized_size
    if (h, w) != box.original_size:
        x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    x = x.clamp(0.0, 1.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    pixels = torch.zeros(x.shape[0], 3, input_size, input_size, device=x.device)
    pixels[:, :, :h, :w] = (x - mean_t) / std_t
    return pixels, box


ROUNDING_MARGIN = 1e-6
"""Added before rounding a resized 8-bit value (far above float64's error on 0..255, far below
the 1/2048 steps of OpenCV's weights)."""


def short_side_pixels(
    images: torch.Tensor,
    box: Letterbox,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """The training-free references' way in: uint8 ``B x 3 x H x W`` resized to the box's
    ``resized_size`` by bilinear interpolation without antialiasing (half-pixel centres, as
    OpenCV's ``INTER_LINEAR`` that mmcv uses), rounded back to 8 bits as OpenCV's output is,
    then normalised: float32 ``B x 3 x h x w``, no padding. (OpenCV interpolates 8-bit images
    in fixed point: a pixel may differ from it by one level.)"""
    x = images.double()
    if box.resized_size != box.original_size:
        x = F.interpolate(x, size=box.resized_size, mode="bilinear", align_corners=False)
        # Halves round up, as OpenCV's fixed point does; the margin makes a half that float64
        # computed as 12.4999999999 (the kernels' order of operations differs with the number
        # of threads) round as 12.5, so that every process gets the same pixels.
        x = torch.floor(x + (0.5 + ROUNDING_MARGIN)).clamp(0.0, 255.0)
    x = x.float() / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
