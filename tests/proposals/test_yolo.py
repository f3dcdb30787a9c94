"""The ultralytics path, offline, with a random-weight detector built from its YAML."""

import sys

import numpy as np
import pytest
from PIL import Image

from clsclip.proposals import LabelMatcher, YoloProposer, resolve_proposer
from tests.conftest import random_rgb, tiny_segmenter


@pytest.fixture(scope="module")
def yolo() -> YoloProposer:
    return YoloProposer("yolov8n.yaml", conf=0.0, imgsz=160, device="cpu", max_det=5)


def test_random_detector_proposes_boxes_in_image_pixels(yolo) -> None:
    image = Image.fromarray(random_rgb(97, 131))
    proposals = yolo.propose(image, ["dog"])
    assert 1 <= len(proposals) <= 5
    assert proposals.boxes.shape == (len(proposals), 4) and proposals.boxes.dtype == np.float32
    x0, y0, x1, y1 = proposals.boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 131).all() and (y1 <= 97).all()
    assert (x1 >= x0).all() and (y1 >= y0).all()
    assert all(isinstance(label, str) for label in proposals.labels)
    assert not yolo.open_vocabulary


def test_yolo_end_to_end_through_the_segmenter(yolo) -> None:
    seg = tiny_segmenter()
    seg.matcher = LabelMatcher(class_agnostic=True)  # random detector labels are "0".."79"
    image = random_rgb(97, 131)
    result = seg.segment(image, ["dog", "cat"], proposals=yolo)
    assert result.probs.shape == (2, 97, 131)
    assert set(result.boxes) == {"dog", "cat"} and len(result.boxes["dog"]) >= 1
    plain = seg.segment(image, ["dog", "cat"], proposals=None)
    assert (result.probs >= plain.probs - 1e-6).all()  # max fusion only adds
    assert result.overlay().size == (131, 97)


def test_ultralytics_leaves_torchs_thread_count_alone() -> None:
    """ultralytics sets torch's threads to min(8, cores - 1) at every CPU predict; the proposer
    puts them back, so the segmenter neither slows down nor changes its last bits after it."""
    import os

    import torch

    # ultralytics' import sets it to 1 for child processes; the proposer leaves it as it was:
    # unset, or 1 under pytest-xdist (tests/conftest.py)
    expected = "1" if os.environ.get("PYTEST_XDIST_WORKER") else None
    assert os.environ.get("OMP_NUM_THREADS") == expected
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        proposer = YoloProposer("yolov8n.yaml", conf=0.0, imgsz=96, device="cpu", max_det=2)
        proposer.propose(Image.fromarray(random_rgb(40, 50)), ["dog"])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_missing_ultralytics_gives_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import ultralytics -> ImportError
    with pytest.raises(ImportError, match=r'pip install "clsclip\[yolo\]"'):
        resolve_proposer("yolo")
    with pytest.raises(ImportError, match=r'pip install "clsclip\[yolo\]"'):
        tiny_segmenter().segment(random_rgb(8, 8), ["dog"], proposals="yolo")
    # Everything else still works.
    assert tiny_segmenter().segment(random_rgb(8, 8), ["dog"]).probs.shape == (1, 8, 8)


def test_undecodable_files_stay_an_oserror_after_ultralytics_patches_pil(yolo, tmp_path) -> None:
    import PIL.Image

    assert PIL.Image.open.__module__.startswith("ultralytics")  # the patch is in place
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(OSError, match="cannot decode image file"):
        tiny_segmenter().segment(tmp_path / "junk.jpg", ["dog"])


def test_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="conf and iou must be in"):
        YoloProposer("yolov8n.yaml", conf=1.5)
