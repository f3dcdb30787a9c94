"""Many images: decoded and letterboxed in `DataLoader` workers while the network runs."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from clsclip.geometry import Letterbox
from clsclip.pipeline.images import ImageInput, load_image
from clsclip.pipeline.letterbox import letterbox_image


@dataclass
class LoadedImage:
    """One decoded and letterboxed image, or why it could not be.

    Attributes:
        index: position in the input sequence.
        source: the file path, when the input was one.
        pixels: float32 ``3 x S x S`` normalised model input (None on error).
        letterbox: where the image sits in it (None on error).
        image: the RGB image, when kept (for drawing and ClsCLIP+ crops).
        error: ``"ErrorType: message"`` when decoding failed.
    """

    index: int
    source: str | None
    pixels: torch.Tensor | None = None
    letterbox: Letterbox | None = None
    image: Image.Image | None = None
    error: str | None = None


class ImageListDataset(Dataset[LoadedImage]):
    """Images decoded and letterboxed on access; a bad image becomes a `LoadedImage` with
    ``error`` set, never an exception.

    ``items`` is a sequence or a map-style dataset of images (looked up by position), or any
    other iterable of them (a generator), which is never listed: `image_loader` streams it,
    sending each image to the workers with its position.
    """

    def __init__(
        self,
        items: Sequence[ImageInput] | Dataset[Any] | Iterable[ImageInput],
        *,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        max_pixels: int | None,
        keep_images: bool,
        resize_mode: str = "letterbox",
    ) -> None:
        self.resize_mode = resize_mode
        self.items = items
        self.input_size = input_size
        self.mean, self.std = mean, std
        self.max_pixels = max_pixels
        self.keep_images = keep_images

    @property
    def streamed(self) -> bool:
        """The items have no length: they are read as a stream (see `image_loader`)."""
        return not (hasattr(self.items, "__len__") and hasattr(self.items, "__getitem__"))

    def __len__(self) -> int:
        if self.streamed:
            raise TypeError("a streamed image list has no length")
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, Any]) -> LoadedImage:
        """The image at position ``key``, or for a stream ``key = (position, image)``."""
        source = None
        index = key[0] if isinstance(key, tuple) else key
        try:
            item = key[1] if isinstance(key, tuple) else self.items[key]  # type: ignore[index]
            if isinstance(item, (str, os.PathLike)):
                source = os.fspath(item)
            image = load_image(item, max_pixels=self.max_pixels)
            pixels, box = letterbox_image(
                image, self.input_size, self.mean, self.std, self.resize_mode
            )
        except Exception as e:  # reported per image; one bad file must not stop a run
            return LoadedImage(index, source, error=f"{type(e).__name__}: {e}")
        return LoadedImage(index, source, pixels, box, image if self.keep_images else None)


def _keep_list(batch: list[LoadedImage]) -> list[LoadedImage]:
    return batch


def _start_worker(worker_id: int) -> None:
    """Decoding yields the cores to the model: on a machine with few cores, workers at normal
    priority slowed a 2-core CPU run by 10-20 %. And a worker stays quiet when the run stops
    while it hands a batch over (`_quiet_hand_over`)."""
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.nice(10)
    sys.excepthook = _quiet_hand_over(sys.excepthook)


def _quiet_hand_over(report: Any) -> Any:
    """A worker hands each batch's shared memory to the run from multiprocessing's
    resource-sharer thread, which prints any error with `sys.excepthook`. When the run stops
    mid-hand-over (another worker died, Ctrl-C), the connection breaks and a traceback would
    land on the user's terminal beside the run's one-line report; that error alone is dropped."""

    sharer = os.path.join("multiprocessing", "resource_sharer.py")

    def hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        codes = (frame.f_code for frame, _ in traceback.walk_tb(trace))
        in_sharer = any(c.co_name == "_serve" and c.co_filename.endswith(sharer) for c in codes)
        if not (in_sharer and issubclass(kind, (OSError, EOFError))):
            report(kind, error, trace)

    return hook


class _Stream(Sampler[tuple[int, Any]]):
    """Keys ``(position, image)`` of an iterable, pulled as the loader needs them."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return iter(enumerate(self.items))


def image_loader(dataset: ImageListDataset, *, batch_size: int, workers: int) -> DataLoader[Any]:
    """Batches (lists) of `LoadedImage` in input order; ``workers`` processes decode ahead
    (two batches each), so at most a few batches are in memory, also for a streamed list."""
    items: Any = dataset.items
    sampler = _Stream(items) if dataset.streamed else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_keep_list,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_start_worker if workers else None,
    )
