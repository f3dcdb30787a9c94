"""A FiftyOne model: ``dataset.apply_model(ClsClipModel(model, classes), label_field=...)``.

Needs ``pip install "clsclip[fiftyone]"``. FiftyOne decodes each sample's image (RGB) and
calls `ClsClipModel.predict_all` with a batch of them; each gets a ``Segmentation`` (the label
map: set ``dataset.mask_targets[label_field] = model.mask_targets`` to name its values) or,
with ``instances=True``, ``Detections`` with one mask per connected component.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from clsclip.classes import resolve_classes
from clsclip.integrations._source import load_segmenter, rgb_image
from clsclip.optional import require
from clsclip.results import formats
from clsclip.segmenter import ClassesArg, Segmenter, Threshold

fom = require("fiftyone.core.models", "fiftyone", purpose="clsclip.integrations.fiftyone")

__all__ = ["ClsClipModel"]


class ClsClipModel(fom.Model):  # type: ignore[name-defined]
    """clsclip as a FiftyOne image model.

    Args:
        model: a `Segmenter`, or a folder / Hub id for `Segmenter.from_pretrained`.
        classes: the classes, as `Segmenter.segment` takes them (names, specs, mappings).
        threshold, min_score: as in `Segmenter.segment`.
        instances: ``Detections`` (one masked detection per 8-connected component of each
            class, needs scipy) instead of a ``Segmentation``.
        **load: `Segmenter.from_pretrained` options (``device``, ``precision``, ...).
    """

    def __init__(
        self,
        model: Segmenter | str | os.PathLike[str],
        classes: ClassesArg,
        *,
        threshold: Threshold = None,
        min_score: float | None = None,
        instances: bool = False,
        **load: Any,
    ) -> None:
        self.classes = resolve_classes(classes)
        self.segmenter = load_segmenter(model, **load)
        self.threshold = threshold
        self.min_score = min_score
        self.instances = instances
        self._preprocess = True

    @property
    def mask_targets(self) -> dict[int, str]:
        """``{k + 1: class k}``: the values of the ``Segmentation`` masks."""
        return formats.mask_targets([spec.name for spec in self.classes])

    @property
    def media_type(self) -> str:
        return "image"

    @property
    def has_logits(self) -> bool:
        return False

    @property
    def has_embeddings(self) -> bool:
        return False

    @property
    def ragged_batches(self) -> bool:
        return False  # no transforms: predict_all takes a list of images of any sizes

    @property
    def transforms(self) -> None:
        return None

    @property
    def preprocess(self) -> bool:
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        self._preprocess = value

    def predict(self, arg: Any) -> Any:
        """The label of one image (``H x W x 3`` uint8 RGB array, PIL image or path)."""
        return self.predict_all([arg])[0]

    def predict_all(self, args: Sequence[Any]) -> list[Any]:
        """The labels of a batch of images, in one `Segmenter.segment` call."""
        images = [rgb_image(arg) for arg in args]
        results = self.segmenter.segment(
            images, self.classes, threshold=self.threshold, min_score=self.min_score
        )
        return [result.to_fiftyone(instances=self.instances) for result in results]
