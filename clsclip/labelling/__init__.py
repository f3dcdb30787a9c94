"""Labelling a whole dataset (``clsclip segment``): inputs, the run, its outputs and manifest.

Inference never imports this package.
"""

from clsclip.labelling.inputs import list_images, unique_stems
from clsclip.labelling.run import (
    FORMATS,
    MANIFEST,
    RunOptions,
    finish,
    prepare,
    read_manifests,
    run,
    todo,
)

__all__ = [
    "FORMATS",
    "MANIFEST",
    "RunOptions",
    "finish",
    "list_images",
    "prepare",
    "read_manifests",
    "run",
    "todo",
    "unique_stems",
]
