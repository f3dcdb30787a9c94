import numpy as np
import pytest
from PIL import Image

from clsclip.proposals import BoxProposer, Proposals, resolve_proposer


def test_box_proposer_labels_boxes_with_their_class() -> None:
    proposer = BoxProposer({"dog": [[1, 2, 30, 40], (5, 5, 9, 9)], "cat": np.array([[0, 0, 4, 4]])})
    proposals = proposer.propose(Image.new("RGB", (50, 50)), ["cat", "dog"])
    assert proposals.labels == ["dog", "dog", "cat"]
    assert proposals.boxes.dtype == np.float32 and proposals.boxes.shape == (3, 4)
    np.testing.assert_array_equal(proposals.scores, [1, 1, 1])
    assert len(BoxProposer({"dog": []}).propose(Image.new("RGB", (5, 5)), ["dog"])) == 0


@pytest.mark.parametrize(
    ("boxes", "error", "message"),
    [
        ([[1, 2, 3, 4]], TypeError, "must map class names"),
        ({"dog": [[1, 2, 3]]}, ValueError, "not 4 finite numbers"),
        ({"dog": [[1, 2, 3, float("nan")]]}, ValueError, "not 4 finite numbers"),
        ({"dog": [[10, 2, 3, 4]]}, ValueError, "x1 < x0"),
        ({"dog": "1, 2, 3, 4"}, TypeError, "must be a list of"),
        ({3: [[1, 2, 3, 4]]}, TypeError, "must be class names"),
    ],
)
def test_bad_boxes(boxes, error, message) -> None:
    with pytest.raises(error, match=message):
        BoxProposer(boxes)


def test_boxes_for_classes_not_queried() -> None:
    with pytest.raises(ValueError, match=r"boxes given for \['bird'\]"):
        BoxProposer({"bird": [[0, 0, 1, 1]]}).propose(Image.new("RGB", (5, 5)), ["dog"])


def test_proposals_check_lengths() -> None:
    with pytest.raises(ValueError, match="one score and one label per box"):
        Proposals(np.zeros((2, 4)), np.zeros(2), ["a"])


def test_resolve_proposer() -> None:
    assert resolve_proposer(None) is None and resolve_proposer("none") is None
    assert isinstance(resolve_proposer({"dog": [[0, 0, 1, 1]]}), BoxProposer)
    proposer = BoxProposer({})
    assert resolve_proposer(proposer) is proposer
    with pytest.raises(ValueError, match="unknown proposals 'yolov8'"):
        resolve_proposer("yolov8")
    with pytest.raises(TypeError, match="got int"):
        resolve_proposer(3)
