"""Episodic evaluation on PASCAL-5i / COCO-20i folds (mIoU, FB-IoU). Inference never imports it."""

from clsclip.evaluation.boxes import component_boxes
from clsclip.evaluation.episodes import evaluate
from clsclip.evaluation.metrics import EpisodicIoU

__all__ = ["EpisodicIoU", "component_boxes", "evaluate"]
