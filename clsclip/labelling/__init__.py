"""Labelling a whole dataset (``clsclip segment``): inputs keyed by path, a run folder that
belongs to one run, the local engine and Ray Data (`clsclip.labelling.ray_engine`).

Inference never imports this package.
"""

from clsclip.labelling.inputs import (
    InputImage,
    assign_stems,
    coco_image_id,
    common_base,
    list_inputs,
)
from clsclip.labelling.manifest import Manifest, RunLocked, read_run
from clsclip.labelling.outputs import OutputOptions
from clsclip.labelling.run import (
    RunRefused,
    RunReport,
    WorkerDied,
    check_folder,
    close_run,
    execute,
    local_engine,
    open_run,
)
from clsclip.names import FORMATS

__all__ = [
    "FORMATS",
    "InputImage",
    "Manifest",
    "OutputOptions",
    "RunLocked",
    "RunRefused",
    "RunReport",
    "WorkerDied",
    "assign_stems",
    "check_folder",
    "close_run",
    "coco_image_id",
    "common_base",
    "execute",
    "list_inputs",
    "local_engine",
    "open_run",
    "read_run",
]
