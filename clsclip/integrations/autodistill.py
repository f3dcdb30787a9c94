"""An autodistill base model: ``ClsClip(ontology, model).label("images/")``.

Needs ``pip install "clsclip[autodistill]"``. A `CaptionOntology` maps captions to classes;
the captions of one class become the prompts of one class spec (``{"dog": ["a dog", "puppy"]}``,
combined by the model's ``prompt_rule``), so many captions label one class. Each image gives
`supervision.Detections` with masks: one per 8-connected component of each class's mask (the
instances a detector is distilled from), or one per class with ``instances=False``.
``class_id`` indexes ``ontology.classes()``, as autodistill's datasets expect (the first entry
of a class named by several captions).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from clsclip.classes import ClassSpec
from clsclip.integrations._source import load_segmenter
from clsclip.optional import require
from clsclip.segmenter import Segmenter, Threshold

_detection = require(
    "autodistill.detection", "autodistill", purpose="clsclip.integrations.autodistill"
)
_helpers = require("autodistill.helpers", "autodistill", purpose="clsclip.integrations.autodistill")

__all__ = ["ClsClip", "ontology_specs"]


def ontology_specs(ontology: Any) -> tuple[list[ClassSpec], list[int]]:
    """The class specs of an autodistill ontology (one per distinct class, in order of first
    appearance, its captions as prompts) and, for each spec, its index in
    ``ontology.classes()``."""
    captions: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for index, (caption, name) in enumerate(ontology.promptMap):
        if not isinstance(caption, str) or not isinstance(name, str):
            raise TypeError(
                "ontology entries must map caption strings to class names, got "
                f"{caption!r}: {name!r}"
            )
        captions.setdefault(name, [])
        if caption not in captions[name]:
            captions[name].append(caption)
        first.setdefault(name, index)
    specs = [ClassSpec(name, prompts=tuple(prompts)) for name, prompts in captions.items()]
    return specs, [first[spec.name] for spec in specs]


class ClsClip(_detection.DetectionBaseModel):  # type: ignore[name-defined]
    """clsclip as an autodistill base model.

    Args:
        ontology: an autodistill `CaptionOntology` (``{caption: class}``).
        model: a `Segmenter`, or a folder / Hub id for `Segmenter.from_pretrained`.
        threshold, min_score: as in `Segmenter.segment`.
        instances: one detection per connected component (default) or one per class.
        **load: `Segmenter.from_pretrained` options (``device``, ``precision``, ...).
    """

    def __init__(
        self,
        ontology: Any,
        model: Segmenter | str | os.PathLike[str],
        *,
        threshold: Threshold = None,
        min_score: float | None = None,
        instances: bool = True,
        **load: Any,
    ) -> None:
        self.ontology = ontology
        self.specs, self._class_ids = ontology_specs(ontology)
        self.segmenter = load_segmenter(model, **load)
        self.threshold = threshold
        self.min_score = min_score
        self.instances = instances

    def predict(self, input: Any) -> Any:
        """`supervision.Detections` with masks of one image: a path, a PIL image, or a BGR
        ``H x W x 3`` uint8 array (what ``label`` passes: OpenCV's ``imread``)."""
        image = _helpers.load_image(input, return_format="PIL")
        result = self.segmenter.segment(
            image, self.specs, threshold=self.threshold, min_score=self.min_score
        )
        detections = result.to_supervision(instances=self.instances)
        detections.class_id = np.asarray([self._class_ids[k] for k in detections.class_id], int)
        return detections
