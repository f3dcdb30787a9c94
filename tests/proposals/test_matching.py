import pytest
import torch

from clsclip.proposals import LabelMatcher, normalize_label


def test_normalize_label() -> None:
    assert normalize_label("  Potted_Plant ") == "potted plant"
    assert normalize_label("The   dining-table") == "dining table"


@pytest.mark.parametrize(
    ("voc", "coco"),
    [
        ("aeroplane", "airplane"),
        ("motorbike", "motorcycle"),
        ("sofa", "couch"),
        ("tvmonitor", "tv"),
        ("diningtable", "dining table"),
        ("pottedplant", "potted plant"),
        ("person", "person"),
    ],
)
def test_pascal_and_coco_names_match(voc, coco) -> None:
    matcher = LabelMatcher(clip_threshold=None)
    assert matcher.same_class(coco, voc) and matcher.same_class(voc, coco)


def test_match_by_name_and_synonym() -> None:
    matcher = LabelMatcher(clip_threshold=None)
    labels = ["dog", "airplane", "Dog", "car"]
    assert matcher.match(labels, ["dog", "aeroplane", "bird"]) == [[0, 2], [1], []]
    assert not matcher.same_class("dog", "cat")


def test_clip_fallback_only_for_unmatched_classes() -> None:
    vectors = {
        "puppy": [1.0, 0.0],
        "dog": [1.0, 0.0],
        "car": [0.0, 1.0],
        "kitten": [0.6, 0.8],
    }
    calls = []

    def encode(names: list[str]) -> torch.Tensor:
        calls.append(list(names))
        return torch.tensor([vectors[n] for n in names])

    matcher = LabelMatcher(clip_threshold=0.95)
    matches = matcher.match(["dog", "car", "Dog"], ["puppy", "car", "kitten"], encode)
    assert matches == [[0, 2], [1], []]
    assert calls == [["dog", "car"], ["puppy", "kitten"]]  # labels deduplicated by case


def test_class_agnostic_and_validation() -> None:
    assert LabelMatcher(class_agnostic=True).match(["a", "b"], ["x", "y"]) == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="clip_threshold"):
        LabelMatcher(clip_threshold=2.0)
