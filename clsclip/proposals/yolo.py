"""Region proposals from an ultralytics detector (optional: ``pip install "clsclip[yolo]"``)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from clsclip.optional import require
from clsclip.proposals.base import Proposals

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's thread count after the block: ultralytics' device selection sets it to
    ``min(8, cores - 1)`` for the whole process at every CPU predict (1 on a 2-core machine, 8
    on a 64-core one), which slowed every later segmentation and changed its last bits."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def import_ultralytics() -> Any:
    """Import ultralytics, or raise `ImportError` with the install command. Importing it sets
    ``OMP_NUM_THREADS=1`` in the environment when unset, so every process started afterwards
    (Ray workers, torchrun, subprocesses) would run torch on one thread; the variable is
    removed again when it was not the user's."""
    unset = "OMP_NUM_THREADS" not in os.environ
    try:
        return require("ultralytics", "yolo", purpose="YOLO proposals (ultralytics, AGPL-3.0)")
    finally:
        if unset:
            os.environ.pop("OMP_NUM_THREADS", None)


class YoloProposer:
    """Boxes from any ultralytics detector.

    Closed-set detectors (YOLOv8, YOLO11, ... trained on COCO's 80 classes) label boxes with their
    own class names, which clsclip then matches to the queried classes. Open-vocabulary detectors
    (YOLO-World, YOLOE) are told the queried class names with ``set_classes``, so they propose
    boxes for classes beyond COCO.

    Args:
        model: a weights name (``"yolo11n.pt"``, fetched by ultralytics), a path to weights, a
            model YAML (random weights, for tests), or an ultralytics model object.
        conf: minimum confidence of a box.
        iou: IoU threshold of non-maximum suppression.
        imgsz: detector input size in pixels.
        device: ultralytics device string (``"cpu"``, ``"0"``, ``"cuda:0"``); None lets
            ultralytics choose.
        max_det: most boxes per image.
        tracker: an ultralytics tracker config (``"bytetrack.yaml"``, ``"botsort.yaml"`` or a
            path): boxes come from ``model.track`` and carry track ids (`Proposals.ids`), one
            per object across the frames of a video; `reset` starts a new video. None: each
            image alone (``model.predict``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Any = "yolo11n.pt",
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 640,
        device: str | None = None,
        max_det: int = 100,
        tracker: str | None = None,
    ) -> None:
        ultralytics = import_ultralytics()
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must be in [0, 1], got conf={conf}, iou={iou}")
        if isinstance(model, (str, os.PathLike)):
            with keep_torch_threads():
                model = ultralytics.YOLO(os.fspath(model))
        self.model = model
        self.conf, self.iou, self.imgsz, self.device, self.max_det = (
            conf,
            iou,
            imgsz,
            device,
            max_det,
        )
        self.open_vocabulary = hasattr(model, "set_classes") and type(model).__name__ in (
            "YOLOWorld",
            "YOLOE",
        )
        self.tracker = tracker
        self._vocabulary: list[str] | None = None
        # One detector serves every thread: its vocabulary (set_classes) and ultralytics'
        # predictor state belong to one call at a time.
        self._lock = threading.Lock()

    def propose(self, image: Image.Image, class_names: Sequence[str]) -> Proposals:
        """Detect boxes in an RGB image; boxes in its pixels, exclusive end. Safe to call from
        several threads (calls take turns on the one detector)."""
        rgb = image.convert("RGB")
        with self._lock, keep_torch_threads():
            if self.open_vocabulary and self._vocabulary != list(class_names):
                self.model.set_classes(list(class_names))
                self._vocabulary = list(class_names)
            # ultralytics reads numpy arrays as BGR (OpenCV order); a PIL image is read as RGB.
            options = {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz,
                       "device": self.device, "max_det": self.max_det,
                       "verbose": False}  # fmt: skip
            if self.tracker is not None:
                results = self.model.track(rgb, persist=True, tracker=self.tracker, **options)
            else:
                results = self.model.predict(rgb, **options)
            result = results[0]
            if result.boxes is None or len(result.boxes) == 0:
                return Proposals.empty()
            boxes = result.boxes.xyxy.detach().cpu().numpy().astype(np.float32)
            scores = result.boxes.conf.detach().cpu().numpy().astype(np.float32)
            classes = result.boxes.cls.detach().cpu().numpy().astype(int)
            labels = [str(result.names[int(c)]) for c in classes]
            ids = None
            if self.tracker is not None:  # boxes not (yet) in a confirmed track: id -1
                found = result.boxes.id
                ids = (np.full(len(labels), -1, np.int64) if found is None
                       else found.detach().cpu().numpy().astype(np.int64))  # fmt: skip
        logger.debug("detector proposed %d boxes", len(labels))
        return Proposals(boxes, scores, labels, ids=ids)

    def reset(self) -> None:
        """Forget the tracks (a new video starts): its ids start again from 1."""
        with self._lock:
            predictor = getattr(self.model, "predictor", None)
            for tracker in getattr(predictor, "trackers", None) or ():
                tracker.reset()
                if hasattr(tracker, "reset_id"):
                    tracker.reset_id()
