"""FiftyOne: `to_fiftyone` labels read by FiftyOne's own label classes and renderers, and
`ClsClipModel` run by ``dataset.apply_model`` on a real FiftyOne dataset (its MongoDB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clsclip import SegmentationResult
from tests.conftest import import_when_run, random_rgb
from tests.labelling.test_run import CLASSES, _images

_libraries, lib = import_when_run(fol="fiftyone.core.labels", scipy="scipy")


ROOT = Path(__file__).resolve().parents[2]


def _paste(detection, height: int, width: int) -> np.ndarray:
    """A detection's mask in the frame, as FiftyOne renders it."""
    rendered = detection.to_segmentation(frame_size=(width, height), target=1)
    return rendered.mask.astype(bool)


def test_segmentation_is_the_label_map_and_mask_targets_name_it(segmenter) -> None:
    result = segmenter.segment(random_rgb(45, 61, seed=3), CLASSES, threshold=0.57)
    label = result.to_fiftyone()
    assert isinstance(label, lib.fol.Segmentation)
    assert label.mask.dtype == np.uint8
    np.testing.assert_array_equal(label.mask, result.label_map)
    assert result.mask_targets == {1: "dog", 2: "cat", 3: "tree"}
    # FiftyOne's own conversion of the label map, class by class: what the label map holds
    stuff = label.to_detections(mask_targets=result.mask_targets, mask_types="stuff")
    assert {d.label for d in stuff.detections} == {
        name for k, name in enumerate(CLASSES) if (result.label_map == k + 1).any()
    }
    for detection in stuff.detections:
        k = CLASSES.index(detection.label)
        np.testing.assert_array_equal(_paste(detection, 45, 61), result.label_map == k + 1)


def test_instances_are_fiftyone_detections_with_masks(segmenter) -> None:
    result = segmenter.segment(random_rgb(40, 52, seed=4), CLASSES, threshold=0.57)
    detections = result.to_fiftyone(instances=True)
    assert isinstance(detections, lib.fol.Detections) and detections.detections
    for name in CLASSES:
        mine = [d for d in detections.detections if d.label == name]
        union = np.zeros((40, 52), bool)
        for detection in mine:
            pasted = _paste(detection, 40, 52)
            assert not (union & pasted).any()  # components do not overlap
            union |= pasted
            prob = result.prob(name)[pasted]
            assert detection.confidence == pytest.approx(float(prob.mean()), abs=1e-6)
        np.testing.assert_array_equal(union, result.mask(name))
    supervision = result.to_supervision(instances=True)  # the same components, as boxes
    assert len(supervision) == len(detections.detections)


def test_nothing_found_and_many_classes() -> None:
    probs = np.zeros((2, 6, 9), np.float32)
    empty = SegmentationResult.from_probs(["dog", "cat"], probs)
    assert empty.to_fiftyone(instances=True).detections == []
    assert not empty.to_fiftyone().mask.any()
    names = [f"class {k}" for k in range(300)]
    probs = np.zeros((300, 4, 5), np.float32)
    probs[299, 1:3, 1:4] = 0.9
    label = SegmentationResult.from_probs(names, probs).to_fiftyone()
    assert label.mask.dtype == np.uint16 and set(np.unique(label.mask)) == {0, 300}


def test_apply_model_on_a_fiftyone_dataset(tmp_path, saved_model, segmenter) -> None:
    """A real FiftyOne dataset (its own MongoDB, in a fresh process as users run it):
    ``apply_model`` in batches writes labels equal to ``Segmenter.segment``."""
    paths = _images(tmp_path / "images", 3)
    out = tmp_path / "labels.npz"
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(tmp_path / "db"),
           "FIFTYONE_DO_NOT_TRACK": "true", "FIFTYONE_DATABASE_VALIDATION": "false"}  # fmt: skip
    script = ROOT / "tests" / "integrations" / "fiftyone_apply.py"
    done = subprocess.run(
        [sys.executable, str(script), str(saved_model), json.dumps(CLASSES), str(out),
         *map(str, paths)],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = np.load(out)
    for i, path in enumerate(paths):
        result = segmenter.segment(path, CLASSES, threshold=0.57)
        np.testing.assert_array_equal(saved[f"seg{i}"], result.label_map)
        for name in CLASSES:
            np.testing.assert_array_equal(saved[f"inst{i}_{name}"], result.mask(name))
    assert json.loads(str(saved["targets"])) == {"1": "dog", "2": "cat", "3": "tree"}
